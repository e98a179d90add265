//! Serialization of commands and responses (serde + bincode 2).
//!
//! A command or response of type [`Bytes`] takes a shorter path with the same encoding
//! (its length as a varint, then its bytes): it is encoded into a buffer of the exact size,
//! and decoded as a slice of the entry's buffer, without a copy or an allocation.

use std::any::Any;

use bytes::{Buf, BufMut, Bytes, BytesMut};
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
pub(crate) fn encode<T: Serialize + 'static>(value: &T) -> Result<Bytes, String> {
    if let Some(bytes) = (value as &dyn Any).downcast_ref::<Bytes>() {
        return encode_bytes(bytes);
    }
    bincode::serde::encode_to_vec(value, config())
        .map(Bytes::from)
        .map_err(|e| e.to_string())
}

/// The encoding of `Bytes` as bincode's standard configuration writes it, in one buffer of
/// the exact size.
fn encode_bytes(bytes: &Bytes) -> Result<Bytes, String> {
    let len = bytes.len() as u64;
    let mut out = BytesMut::with_capacity(9 + bytes.len());
    // bincode's varint: below 251 one byte, else a marker and the value little-endian.
    match len {
        0..=250 => out.put_u8(len as u8),
        251..=0xffff => {
            out.put_u8(251);
            out.put_u16_le(len as u16);
        }
        0x1_0000..=0xffff_ffff => {
            out.put_u8(252);
            out.put_u32_le(len as u32);
        }
        _ => {
            out.put_u8(253);
            out.put_u64_le(len);
        }
    }
    out.put_slice(bytes);
    Ok(out.freeze())
}

/// Decodes a value from `data`, refusing trailing bytes; a value of type `Bytes` is `data`
/// itself past its length prefix: no copy, no allocation, not even a reference count.
pub(crate) fn decode_owned<T: DeserializeOwned + 'static>(data: Bytes) -> Result<T, String> {
    let mut slot: Option<T> = None;
    if let Some(bytes) = (&mut slot as &mut dyn Any).downcast_mut::<Option<Bytes>>() {
        *bytes = Some(decode_bytes(data)?);
        return slot.ok_or_else(|| "a decoded value went missing".to_string());
    }
    decode(&data)
}

/// `Bytes` as bincode's standard configuration encodes it, taken out of `data`: the same
/// checks as [`decode`] (the length within the data and within the limit, no trailing
/// bytes; like bincode, a length need not be in its shortest form).
fn decode_bytes(mut data: Bytes) -> Result<Bytes, String> {
    let truncated = || "unexpected end of the data while reading a length".to_string();
    let (&marker, rest) = data.split_first().ok_or_else(truncated)?;
    // The marker, then as many little-endian bytes as it says.
    let (len, prefix): (u64, usize) = match marker {
        0..=250 => (u64::from(marker), 1),
        251..=253 => {
            let width = 1usize << (marker - 250);
            let bytes = rest.get(..width).ok_or_else(truncated)?;
            let len = bytes.iter().rev().fold(0u64, |n, &b| (n << 8) | u64::from(b));
            (len, 1 + width)
        }
        _ => return Err(format!("invalid length marker {marker}")),
    };
    if len > LIMIT as u64 {
        return Err(format!("a length of {len} is over the limit of {LIMIT} bytes"));
    }
    let end = (prefix as u64)
        .checked_add(len)
        .filter(|&end| end <= data.len() as u64)
        .ok_or_else(|| format!("a length of {len} runs past the end of the data"))? as usize;
    if end != data.len() {
        return Err(format!("{} trailing bytes", data.len() - end));
    }
    // Moving the start leaves the buffer's reference count alone.
    data.advance(prefix);
    Ok(data)
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

    #[test]
    fn bytes_take_the_short_path_with_the_same_encoding() {
        for len in [0usize, 1, 250, 251, 0xffff, 0x1_0000, 100_000] {
            let value = Bytes::from(vec![7u8; len]);
            let short = encode(&value).unwrap();
            let general = bincode::serde::encode_to_vec(&value, config()).unwrap();
            assert_eq!(&short[..], &general[..], "length {len}");
            let back: Bytes = decode_owned(short.clone()).unwrap();
            assert_eq!(back, value);
            // The data itself, not a copy.
            assert_eq!(back.as_ptr(), short[short.len() - len..].as_ptr(), "length {len}");
        }
        // Lengths not in their shortest form (bincode takes them), and the markers bincode
        // does not take for a length: both paths treat them alike.
        for data in [
            &[251u8, 5, 0, 1, 2, 3, 4, 5][..],
            &[252, 5, 0, 0, 0, 1, 2, 3, 4, 5],
            &[253, 5, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5],
            &[254, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5],
            &[255, 1],
        ] {
            let data = Bytes::copy_from_slice(data);
            let general = decode::<Bytes>(&data);
            let short = decode_owned::<Bytes>(data.clone());
            assert_eq!(
                general.is_ok(),
                short.is_ok(),
                "{data:?}: {general:?} against {short:?}"
            );
        }
        // Other types take the general path.
        let n = encode(&5u64).unwrap();
        assert_eq!(decode_owned::<u64>(n).unwrap(), 5);
    }

    proptest::proptest! {
        /// Whatever the data, the short path for `Bytes` accepts exactly what bincode
        /// accepts, and decodes the same value.
        #[test]
        fn bytes_decode_as_bincode_does(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let data = Bytes::from(data);
            let general = decode::<Bytes>(&data);
            let short = decode_owned::<Bytes>(data.clone());
            proptest::prop_assert_eq!(general.is_ok(), short.is_ok(), "{:?} vs {:?}", general, short);
            if let (Ok(g), Ok(s)) = (general, short) {
                proptest::prop_assert_eq!(g, s);
            }
        }

        /// Lengths near the markers, with and without the data they announce.
        #[test]
        fn lengths_at_the_markers_decode_as_bincode_does(marker in 249u8..=255, len in proptest::prelude::any::<u64>(), tail in 0usize..4) {
            let mut data = vec![marker];
            data.extend_from_slice(&len.to_le_bytes());
            data.extend(std::iter::repeat_n(1u8, tail));
            let data = Bytes::from(data);
            let general = decode::<Bytes>(&data);
            let short = decode_owned::<Bytes>(data.clone());
            proptest::prop_assert_eq!(general.is_ok(), short.is_ok(), "{:?} vs {:?}", general, short);
        }
    }
}
