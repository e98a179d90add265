//! Serialization of commands and responses (serde + bincode 2).

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest command or response accepted when decoding, checked before allocating.
const LIMIT: usize = 64 << 20;

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<LIMIT>,
> {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// Encodes a value.
pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, String> {
    bincode::serde::encode_to_vec(value, config())
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// Decodes a value, refusing trailing bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let b = encode(&(7u64, "x".to_string())).unwrap();
        assert_eq!(decode::<(u64, String)>(&b).unwrap(), (7, "x".to_string()));
        assert!(decode::<(u64, String)>(&[0xff, 0xff, 0xff]).is_err());
        let mut long = b.to_vec();
        long.push(0);
        assert!(decode::<(u64, String)>(&long).unwrap_err().contains("trailing"));
    }
}
