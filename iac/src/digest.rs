//! The user-data digest the agent and the state can both produce, without keeping user data.
//!
//! The agent reports the hex SHA-1 of the bytes the instance metadata service returns as user
//! data. The AWS provider before 6.0 stored exactly that in `aws_instance.user_data`: the SHA-1
//! of the base64-decoded value if it decodes, of the text otherwise (`userDataHashSum` in the
//! provider). Provider 6.0 stores the clear text instead, and `user_data_base64` /
//! `aws_launch_template.user_data` have always been base64 text. Clear-text user data often
//! carries secrets, so the parser hashes it the moment it is read and keeps only the digest.
//!
//! SHA-1 here is an identifier shared with the provider and the agent, not a security measure.

/// The provider's rule: hash the base64-decoded bytes if the text is valid base64, else the text.
pub(crate) fn user_data_sha1(text: &str) -> String {
    match base64_decode(text) {
        Some(bytes) => hex::encode(sha1(&bytes)),
        None => hex::encode(sha1(text.as_bytes())),
    }
}

/// True for what provider < 6 stored: 40 lowercase hex digits. Clear text that happens to look
/// exactly like that is indistinguishable and taken as a digest.
pub(crate) fn is_sha1_hex(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Standard base64 with padding, as Go's `base64.StdEncoding.DecodeString` accepts it (which
/// skips `\r` and `\n`). `None` if it is not valid base64.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let clean: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    base64::engine::general_purpose::STANDARD.decode(clean).ok()
}

/// SHA-1 (FIPS 180-4).
pub(crate) fn sha1(data: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_test_vectors() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
            (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
            ),
            // The agent test's input (agent/src/identity/tests.rs), digest from `sha1sum`.
            (
                b"#!/bin/sh\necho hi\n",
                "b2b62c101a156f5f12dd7197cf7ae9424164b115",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(hex::encode(sha1(input)), *want, "{input:?}");
        }
        let million_a = vec![b'a'; 1_000_000];
        assert_eq!(
            hex::encode(sha1(&million_a)),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn base64_like_go_std_encoding() {
        assert_eq!(base64_decode("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64_decode("aGVsbG8h").as_deref(), Some(&b"hello!"[..]));
        assert_eq!(
            base64_decode("aGk=\naGk=").as_deref(),
            None,
            "padding mid-stream"
        );
        assert_eq!(
            base64_decode("aGVs\r\nbG8=").as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(base64_decode("aGVsbG8").as_deref(), None, "missing padding");
        assert_eq!(base64_decode("#!/bin/bash"), None);
        assert_eq!(base64_decode("").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn user_data_digest_follows_the_aws_provider() {
        // printf '#!/bin/bash\necho hello\n' | sha1sum
        let want = "7ab9e1ebee7aa7f6ab88b6001c017d19c3e27d14";
        assert_eq!(user_data_sha1("#!/bin/bash\necho hello\n"), want);
        assert_eq!(user_data_sha1("IyEvYmluL2Jhc2gKZWNobyBoZWxsbwo="), want);
        assert!(is_sha1_hex(want));
        assert!(!is_sha1_hex(&want.to_uppercase()));
        assert!(!is_sha1_hex("#!/bin/bash"));
    }
}
