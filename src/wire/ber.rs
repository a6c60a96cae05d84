//! BER (X.690) for LDAP: a strict reader over a message already in memory (definite lengths of
//! at most 4 bytes, single-byte tags, every length checked against what encloses it) and the
//! writer's TLV and INTEGER encodings.

/// One TLV with a short- or long-form definite length.
pub(crate) fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    // Exact size up front: the value may be a password, and a reallocation would leave a copy.
    let mut out = Vec::with_capacity(2 + std::mem::size_of::<usize>() + value.len());
    out.push(tag);
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(value);
    out
}

/// A strict reader over BER content already in memory.
pub(crate) struct Ber<'a> {
    rest: &'a [u8],
}

impl<'a> Ber<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Ber { rest: data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    /// The next element's tag and value.
    pub(crate) fn next(&mut self) -> std::result::Result<(u8, &'a [u8]), &'static str> {
        let (&tag, after) = self.rest.split_first().ok_or("truncated element")?;
        if tag & 0x1f == 0x1f {
            return Err("multi-byte tag");
        }
        let (len, after) = read_length(after)?;
        if len > after.len() {
            return Err("length beyond the enclosing element");
        }
        let (value, rest) = after.split_at(len);
        self.rest = rest;
        Ok((tag, value))
    }

    pub(crate) fn expect(
        &mut self,
        tag: u8,
        what: &'static str,
    ) -> std::result::Result<&'a [u8], &'static str> {
        match self.next()? {
            (t, v) if t == tag => Ok(v),
            _ => Err(what),
        }
    }
}

/// A definite length (short form, or long form of at most 4 bytes).
pub(crate) fn read_length(data: &[u8]) -> std::result::Result<(usize, &[u8]), &'static str> {
    let (&first, rest) = data.split_first().ok_or("truncated length")?;
    if first < 0x80 {
        return Ok((usize::from(first), rest));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 {
        return Err("indefinite length");
    }
    if n > 4 || n > rest.len() {
        return Err("length too long");
    }
    let len = rest[..n]
        .iter()
        .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    Ok((len, &rest[n..]))
}

/// A two's-complement INTEGER or ENUMERATED of 1 to 8 bytes.
pub(crate) fn integer(v: &[u8]) -> std::result::Result<i64, &'static str> {
    if v.is_empty() || v.len() > 8 {
        return Err("bad integer length");
    }
    let negative = v[0] & 0x80 != 0;
    let start: i64 = if negative { -1 } else { 0 };
    Ok(v.iter().fold(start, |acc, &b| (acc << 8) | i64::from(b)))
}

/// An INTEGER's content octets, minimal two's complement.
pub(crate) fn encode_id(id: i64) -> Vec<u8> {
    let bytes = id.to_be_bytes();
    let mut start = bytes.iter().take_while(|&&b| b == 0).count().min(7);
    if start > 0 && bytes[start] & 0x80 != 0 {
        start -= 1;
    }
    bytes[start..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_definite_short_or_at_most_four_bytes() {
        assert_eq!(read_length(&[0x05, 9]), Ok((5, &[9u8][..])));
        assert_eq!(read_length(&[0x82, 0x01, 0x00]), Ok((256, &[][..])));
        assert!(read_length(&[0x80]).is_err()); // indefinite
        assert!(read_length(&[0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(read_length(&[0x82, 0x01]).is_err()); // truncated
        assert!(read_length(&[]).is_err());
    }

    #[test]
    fn elements_never_reach_past_what_encloses_them() {
        let mut ber = Ber::new(&[0x02, 0x01, 0x07, 0x04, 0x05, b'x']);
        assert_eq!(ber.next(), Ok((0x02, &[0x07u8][..])));
        assert!(ber.next().is_err());
        assert!(Ber::new(&[0x1f, 0x01, 0x00]).next().is_err()); // multi-byte tag
    }

    #[test]
    fn integers_round_trip() {
        for v in [0i64, 1, 127, 128, 255, 256, 65_535, i64::from(u32::MAX)] {
            assert_eq!(integer(&encode_id(v)), Ok(v), "{v}");
        }
        assert_eq!(integer(&[0xff]), Ok(-1));
        assert!(integer(&[]).is_err());
        assert!(integer(&[0; 9]).is_err());
        // A negative id cannot come from the library, but must not panic either.
        let _ = encode_id(-1);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(&long[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }
}
