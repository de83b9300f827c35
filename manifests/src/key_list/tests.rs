//! The key chain: rotation step by step, what a device refuses, and threshold signing.

use std::collections::BTreeSet;

use crate::*;

fn pair(n: u8) -> KeyPair {
    KeyPair::from_seed(&[n; 32])
}

fn app() -> AppId {
    AppId::parse("shop").unwrap()
}

/// A key list whose root is `root` (threshold `t`), index key 10 and release key 11.
fn list(version: u64, root: &[&KeyPair], t: u32) -> KeyList {
    let mut l = KeyList::single(app(), version, pair(10).public());
    for k in root {
        l.keys.insert(k.id(), k.public().to_hex());
    }
    l.keys.insert(pair(11).id(), pair(11).public().to_hex());
    l.roles.root = Role {
        keyids: root.iter().map(|k| k.id()).collect(),
        threshold: t,
    };
    l.roles.index.keyids = BTreeSet::from([pair(10).id()]);
    l.roles.release.keyids = BTreeSet::from([pair(11).id()]);
    l
}

fn pinned(keys: &[&KeyPair], t: usize) -> TrustedKeys {
    TrustedKeys::new(keys.iter().map(|k| k.public().clone()), t).unwrap()
}

fn follow(pins: &TrustedKeys, held: Option<&KeyList>, chain: &[Vec<u8>]) -> Result<Option<u64>> {
    follow_key_chain(pins, held, &app(), chain).map(|t| t.map(|t| t.list.version))
}

#[test]
fn a_rotated_root_chain_is_followed_one_step_at_a_time() {
    let (a, b, c) = (pair(1), pair(2), pair(3));
    let v1 = list(1, &[&a], 1).sign(&[&a]).unwrap().bytes;
    let v2 = list(2, &[&b], 1).sign(&[&a, &b]).unwrap().bytes;
    let v3 = list(3, &[&c], 1).sign(&[&b, &c]).unwrap().bytes;
    let chain = vec![v1.clone(), v2.clone(), v3.clone()];
    assert_eq!(follow(&pinned(&[&a], 1), None, &chain), Ok(Some(3)));
    // A device pinned to the second root starts from the first list it signed.
    assert_eq!(follow(&pinned(&[&b], 1), None, &chain), Ok(Some(3)));
    // Held at 2: only 3 is new; an old chain replayed changes nothing.
    let held = list(2, &[&b], 1);
    assert_eq!(follow(&pinned(&[&a], 1), Some(&held), &chain), Ok(Some(3)));
    let held3 = list(3, &[&c], 1);
    assert_eq!(
        follow(&pinned(&[&a], 1), Some(&held3), &chain[..2]),
        Ok(None)
    );
    // The served chain as one JSON array.
    let served = join_key_chain(&[v1, v2, v3]);
    let split = split_key_chain(&served).unwrap();
    assert_eq!(follow(&pinned(&[&a], 1), None, &split), Ok(Some(3)));
}

#[test]
fn a_new_root_needs_the_old_root_and_itself() {
    let (a, b) = (pair(1), pair(2));
    let v1 = list(1, &[&a], 1).sign(&[&a]).unwrap().bytes;
    // Signed by the new root only: someone who holds b but not a.
    let v2_new_only = list(2, &[&b], 1).sign(&[&b]).unwrap().bytes;
    let err = follow(&pinned(&[&a], 1), None, &[v1.clone(), v2_new_only]).unwrap_err();
    assert_eq!(err.code(), "untrusted_signer", "{err}");
    // Signed by the old root only: the new root never approved it.
    let v2_old_only = list(2, &[&b], 1).sign(&[&a]).unwrap().bytes;
    let err = follow(&pinned(&[&a], 1), None, &[v1.clone(), v2_old_only]).unwrap_err();
    assert_eq!(err.code(), "untrusted_signer", "{err}");
    // A skipped version.
    let v3 = list(3, &[&b], 1).sign(&[&a, &b]).unwrap().bytes;
    let err = follow(&pinned(&[&a], 1), None, &[v1.clone(), v3]).unwrap_err();
    assert!(err.to_string().contains("one higher"), "{err}");
    // Another app's list.
    let mut other = list(2, &[&b], 1);
    other.app = AppId::parse("other").unwrap();
    let other = other.sign(&[&a, &b]).unwrap().bytes;
    let err = follow(&pinned(&[&a], 1), None, &[v1, other]).unwrap_err();
    assert!(err.to_string().contains("for app other"), "{err}");
}

#[test]
fn a_root_threshold_of_two_needs_two_signatures() {
    let (a, b, c) = (pair(1), pair(2), pair(3));
    let pins = pinned(&[&a, &b], 2);
    let v1 = list(1, &[&a, &b], 2);
    let one = v1.sign(&[&a]).unwrap().bytes;
    // Signed by one of two pinned keys: not this device's chain.
    assert_eq!(follow(&pins, None, std::slice::from_ref(&one)), Ok(None));
    let both = cosign(&one, &b).unwrap().bytes;
    assert_eq!(
        follow(&pins, None, std::slice::from_ref(&both)),
        Ok(Some(1))
    );
    // Rotating to c needs both old keys.
    let v2 = list(2, &[&c], 1).sign(&[&a, &c]).unwrap().bytes;
    let err = follow(&pins, None, &[both.clone(), v2.clone()]).unwrap_err();
    assert_eq!(err.code(), "threshold_not_met", "{err}");
    let v2 = cosign(&v2, &b).unwrap().bytes;
    assert_eq!(follow(&pins, None, &[both, v2]), Ok(Some(2)));
}

#[test]
fn a_manifest_signed_by_one_of_two_required_release_keys_is_refused() {
    let (p, q) = (pair(20), pair(21));
    let mut keys = list(1, &[&pair(1)], 1);
    keys.keys.insert(p.id(), p.public().to_hex());
    keys.keys.insert(q.id(), q.public().to_hex());
    keys.roles.release = Role {
        keyids: BTreeSet::from([p.id(), q.id()]),
        threshold: 2,
    };
    let doc = serde_json::json!({"_type": "anything", "format": 1});
    let one = sign_value(&doc, &[&p]).unwrap().bytes;
    let err = check_role(&one, &keys, RoleName::Release).unwrap_err();
    assert_eq!(err.code(), "threshold_not_met", "{err}");
    // The second holder adds a signature after the fact; the digest stays the same.
    let two = add_signature(&one, q.public(), &q.sign(&signed_bytes(&one).unwrap())).unwrap();
    assert_eq!(two.digest, sign_value(&doc, &[&p]).unwrap().digest);
    check_role(&two.bytes, &keys, RoleName::Release).unwrap();
    // A signature that does not verify is not added.
    let err = add_signature(&one, q.public(), &[7; 64]).unwrap_err();
    assert_eq!(err.code(), "bad_signature");
}

#[test]
fn invalid_key_lists_are_never_signed() {
    let mut l = list(1, &[&pair(1)], 1);
    l.roles.root.threshold = 2;
    assert!(
        l.sign(&[&pair(1)])
            .unwrap_err()
            .to_string()
            .contains("roles")
    );
    let mut l = list(1, &[&pair(1)], 1);
    l.roles.index.keyids.insert(pair(9).id());
    let err = l.sign(&[&pair(1)]).unwrap_err().to_string();
    assert!(err.contains("not in keys"), "{err}");
    let l = list(0, &[&pair(1)], 1);
    assert!(
        l.sign(&[&pair(1)])
            .unwrap_err()
            .to_string()
            .contains("start at 1")
    );
    let mut l = list(1, &[&pair(1)], 1);
    l.keys.insert(pair(9).id(), pair(8).public().to_hex());
    assert!(
        l.sign(&[&pair(1)])
            .unwrap_err()
            .to_string()
            .contains("id is")
    );
}
