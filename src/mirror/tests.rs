use super::*;

#[test]
fn ns_path_segments_are_cut_exactly() {
    let path = "/v2/basic.test/team/app/manifests/1.0";
    let first = "basic.test";
    assert_eq!(&path[3..4 + first.len()], "/basic.test");
}
