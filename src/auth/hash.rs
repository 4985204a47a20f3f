//! Password hashes as they appear in htpasswd files, and their verification.
//!
//! Every format nginx and registry:2 users keep: bcrypt (registry:2's only
//! one), Apache MD5 (`htpasswd`'s default), `{SHA}`, `{SSHA}`, crypt(3)
//! SHA-256/512 and MD5, and `{PLAIN}`. An unprefixed value is never taken as
//! plain text.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use md5::{Digest, Md5};
use sha_crypt::PasswordVerifier;
use sha1::Sha1;

#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$`, `$2a$`, `$2b$`, `$2x$`, any cost.
    Bcrypt(String),
    /// `$apr1$` (Apache) or `$1$` (glibc): both MD5-crypt with another magic.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        checksum: String,
    },
    /// `$5$` / `$6$`.
    ShaCrypt(String),
    /// `{SHA}` base64(sha1(password)).
    Sha1([u8; 20]),
    /// `{SSHA}` base64(sha1(password + salt) + salt).
    SaltedSha1 { digest: [u8; 20], salt: Vec<u8> },
    /// `{PLAIN}` text; accepted with a warning at load.
    Plain(String),
}

// Never print a hash, not even in debug output.
impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind())
    }
}

impl PasswordHash {
    /// Parses the hash field of an htpasswd line; the error says why not.
    pub fn parse(field: &str) -> Result<PasswordHash, &'static str> {
        if field.is_empty() {
            return Err("empty password hash");
        }
        if let Some(rest) = field.strip_prefix("{SHA}") {
            let bytes = STANDARD.decode(rest).map_err(|_| "{SHA} value is not valid base64")?;
            let digest: [u8; 20] = bytes.try_into().map_err(|_| "{SHA} value is not a SHA-1 digest")?;
            return Ok(PasswordHash::Sha1(digest));
        }
        if let Some(rest) = field.strip_prefix("{SSHA}") {
            let bytes = STANDARD.decode(rest).map_err(|_| "{SSHA} value is not valid base64")?;
            if bytes.len() <= 20 {
                return Err("{SSHA} value is too short to hold a digest and a salt");
            }
            let (digest, salt) = bytes.split_at(20);
            return Ok(PasswordHash::SaltedSha1 {
                digest: digest.try_into().unwrap(),
                salt: salt.to_vec(),
            });
        }
        if let Some(rest) = field.strip_prefix("{PLAIN}") {
            return Ok(PasswordHash::Plain(rest.to_owned()));
        }
        if ["$2y$", "$2a$", "$2b$", "$2x$"].iter().any(|p| field.starts_with(p)) {
            // Validate the shape now so a broken line is reported at load.
            field
                .parse::<bcrypt::HashParts>()
                .map_err(|_| "malformed bcrypt hash")?;
            return Ok(PasswordHash::Bcrypt(field.to_owned()));
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = field.strip_prefix(magic) {
                let (salt, checksum) = rest.split_once('$').ok_or("malformed MD5-crypt hash")?;
                if salt.len() > 8 || checksum.len() != 22 {
                    return Err("malformed MD5-crypt hash");
                }
                return Ok(PasswordHash::Md5Crypt {
                    magic,
                    salt: salt.to_owned(),
                    checksum: checksum.to_owned(),
                });
            }
        }
        if field.starts_with("$5$") || field.starts_with("$6$") {
            return Ok(PasswordHash::ShaCrypt(field.to_owned()));
        }
        if field.len() == 13 && field.bytes().all(is_crypt64) {
            return Err("traditional DES crypt is not supported (weak); re-create the user with bcrypt");
        }
        Err("unrecognised hash format (an unprefixed value is never taken as plain text)")
    }

    pub fn kind(&self) -> &'static str {
        match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::Md5Crypt { magic: "$apr1$", .. } => "apr1",
            PasswordHash::Md5Crypt { .. } => "md5-crypt",
            PasswordHash::ShaCrypt(_) => "sha-crypt",
            PasswordHash::Sha1(_) => "sha1",
            PasswordHash::SaltedSha1 { .. } => "ssha",
            PasswordHash::Plain(_) => "plain",
        }
    }

    /// Checks a password. Slow for bcrypt and sha-crypt: call it off the
    /// async worker threads.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            PasswordHash::Md5Crypt { magic, salt, checksum } => constant_time_eq(
                md5_crypt(password, salt.as_bytes(), magic).as_bytes(),
                checksum.as_bytes(),
            ),
            PasswordHash::ShaCrypt(h) => sha_crypt::ShaCrypt::default()
                .verify_password(password, h.as_str())
                .is_ok(),
            PasswordHash::Sha1(digest) => constant_time_eq(&Sha1::digest(password), digest),
            PasswordHash::SaltedSha1 { digest, salt } => {
                let mut h = Sha1::new();
                h.update(password);
                h.update(salt);
                constant_time_eq(&h.finalize(), digest)
            }
            PasswordHash::Plain(p) => constant_time_eq(password, p.as_bytes()),
        }
    }
}

fn is_crypt64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'/'
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const CRYPT64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// MD5-crypt (Poul-Henning Kamp's algorithm), as used by `$1$` and `$apr1$`;
/// returns the 22-character checksum.
pub fn md5_crypt(password: &[u8], salt: &[u8], magic: &str) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new().chain_update(password).chain_update(magic).chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alternate[..n]);
        left -= n;
    }
    let mut bits = password.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        bits >>= 1;
    }
    let mut digest = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(digest);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(digest);
        } else {
            c.update(password);
        }
        digest = c.finalize();
    }
    let d = digest;
    let mut out = String::with_capacity(22);
    let mut put = |value: u32, chars: usize| {
        let mut v = value;
        for _ in 0..chars {
            out.push(CRYPT64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(u32::from(d[a]) << 16 | u32::from(d[b]) << 8 | u32::from(d[c]), 4);
    }
    put(u32::from(d[11]), 2);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(field: &str, good: &str) {
        let h = PasswordHash::parse(field).unwrap_or_else(|e| panic!("{field}: {e}"));
        assert!(h.verify(good.as_bytes()), "{} rejects the right password", h.kind());
        assert!(!h.verify(b"wrong"), "{} accepts a wrong password", h.kind());
        assert!(!h.verify(b""), "{} accepts an empty password", h.kind());
    }

    #[test]
    fn known_vectors_verify() {
        check("$apr1$RandSalt$PgCXHRrkpSt4cbyC2C6bm/", "password");
        check("$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00", "password");
        check("$1$5pZSV9va$azfrPr6af3Fc7dLblQXVa0", "password");
        check("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "password");
        check(
            "$2y$07$BCryptRequires22Chrcte/VlQH0piJtjXl.0t1XkA8pw9dMXTpOq",
            "rasmuslerdorf",
        );
        check(
            "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
            "Hello world!",
        );
        check(
            "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
            "Hello world!",
        );
        check("{PLAIN}s3cret", "s3cret");
        let mut ssha = Sha1::new()
            .chain_update(b"pw")
            .chain_update(b"NaCl")
            .finalize()
            .to_vec();
        ssha.extend_from_slice(b"NaCl");
        check(&format!("{{SSHA}}{}", STANDARD.encode(ssha)), "pw");
    }

    #[test]
    fn bad_fields_say_why() {
        assert!(PasswordHash::parse("").is_err());
        assert!(
            PasswordHash::parse("secret")
                .unwrap_err()
                .contains("never taken as plain text")
        );
        assert!(PasswordHash::parse("rl4xQY3aFoqWc").unwrap_err().contains("DES"));
        assert!(PasswordHash::parse("{SHA}not-base64!").is_err());
        assert!(PasswordHash::parse("{SHA}AAAA").is_err());
        assert!(PasswordHash::parse("$apr1$salt").is_err());
        assert!(PasswordHash::parse("$2y$05$short").is_err());
    }

    #[test]
    fn debug_output_never_shows_the_hash() {
        let h = PasswordHash::parse("{PLAIN}s3cret").unwrap();
        assert_eq!(format!("{h:?}"), "plain");
    }
}
