//! `Authorization: Basic ...` parsing: `auth::parse_basic` on arbitrary
//! header values.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use registry_gateway::auth::parse_basic;

fuzz_target!(|data: &[u8]| {
    check(data);
    // The same bytes as credentials, encoded the way a client would.
    if let Some(colon) = data.iter().position(|&b| b == b':') {
        let header = format!("Basic {}", STANDARD.encode(data));
        let parsed = parse_basic(header.as_bytes());
        let user = std::str::from_utf8(&data[..colon]);
        match (parsed, user) {
            (Some((u, p)), Ok(user)) => {
                assert_eq!(u, user);
                assert_eq!(p, &data[colon + 1..]);
            }
            (None, Ok(user)) => assert!(
                user.is_empty() || header.len() > 4096,
                "well-formed credentials refused: {header:?}"
            ),
            (Some(_), Err(_)) => panic!("user name that is not UTF-8 accepted"),
            (None, Err(_)) => {}
        }
    }
});

fn check(value: &[u8]) {
    let Some((user, password)) = parse_basic(value) else {
        return;
    };
    assert!(value.len() <= 4096, "over-long header accepted");
    assert!(!user.is_empty(), "empty user accepted");
    assert!(!user.contains(':'), "user {user:?} contains the separator");
    let space = value.iter().position(|&b| b == b' ').expect("scheme and credentials");
    assert!(value[..space].eq_ignore_ascii_case(b"basic"), "scheme {:?}", &value[..space]);
    // What was decoded is exactly `user:password`.
    let decoded = STANDARD.decode(value[space..].trim_ascii()).expect("accepted value decodes");
    let mut want = user.as_bytes().to_vec();
    want.push(b':');
    want.extend_from_slice(&password);
    assert_eq!(decoded, want);
}
