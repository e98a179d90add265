//! The replicated counter example. It is being built: this binary only says so.

fn main() {
    eprintln!("the counter example is not built yet; see the README");
    std::process::exit(2);
}
