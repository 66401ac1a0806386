//! Random secrets from the operating system's generator.

/// Letters and digits without look-alikes (0/O, 1/l/I), for secrets people may type.
const READABLE: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A random string of `length` readable characters; 20 of them carry about 115 bits.
pub fn readable_secret(length: usize) -> Result<String, getrandom::Error> {
    let mut out = String::with_capacity(length);
    let mut byte = [0u8; 1];
    // Rejection sampling keeps every character equally likely.
    let limit = 256 - (256 % READABLE.len());
    while out.len() < length {
        getrandom::fill(&mut byte)?;
        if (byte[0] as usize) < limit {
            out.push(char::from(READABLE[byte[0] as usize % READABLE.len()]));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_have_the_length_and_alphabet_asked_for_and_differ() {
        let a = readable_secret(20).unwrap();
        let b = readable_secret(20).unwrap();
        assert_eq!(a.len(), 20);
        assert!(a.bytes().all(|c| READABLE.contains(&c)));
        assert_ne!(a, b);
    }
}
