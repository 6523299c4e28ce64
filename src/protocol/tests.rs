use super::*;
use crate::error::SyncError;
use serde::{Deserialize, Serialize};

#[test]
fn malformed_and_misshapen_json_differ() {
    let e = parse_json::<PutRequest>(b"{\"value\": ").unwrap_err();
    assert_eq!(e.code(), "invalid_json");
    let e = parse_json::<PutRequest>(b"{\"value\": 5}").unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    let e = parse_json::<PutRequest>(b"{}").unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    // Serde would read a struct from an array of its fields.
    let e = parse_json::<PutRequest>(br#"["v"]"#).unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    let e = parse_json::<BatchRequest>(br#"[{"k":"v"}]"#).unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    let e = parse_json::<PutRequest>(b"{\"value\":\"v\",\"baseVersion\":-1}").unwrap_err();
    assert_eq!(e.code(), "invalid_request");
    let p = parse_json::<PutRequest>(
        br#"{"value":"v","baseVersion":3,"updatedAt":17,"requestId":"r1","extra":true}"#,
    )
    .unwrap();
    assert_eq!(p.options.base_version, Some(3));
    assert_eq!(p.options.request_id.as_deref(), Some("r1"));
}

#[test]
fn whole_numbers_may_be_written_as_floats() {
    let p: PutRequest = parse_json(br#"{"value":"v","baseVersion":3.0,"updatedAt":-2.0}"#).unwrap();
    assert_eq!(
        (p.options.base_version, p.options.updated_at),
        (Some(3), Some(-2))
    );
    let p: PutRequest = parse_json(br#"{"value":"v","baseVersion":null}"#).unwrap();
    assert_eq!(p.options.base_version, None);
    for bad in [
        r#"{"value":"v","baseVersion":3.5}"#,
        r#"{"value":"v","baseVersion":-1.0}"#,
        r#"{"value":"v","baseVersion":-1}"#,
        r#"{"value":"v","baseVersion":1e300}"#,
        r#"{"value":"v","baseVersion":"3"}"#,
        r#"{"value":"v","updatedAt":0.5}"#,
        r#"{"value":"v","baseVersion":9007199254740992}"#,
        r#"{"value":"v","updatedAt":9007199254740992}"#,
        r#"{"value":"v","updatedAt":-9007199254740992}"#,
    ] {
        let e = parse_json::<PutRequest>(bad.as_bytes()).unwrap_err();
        assert_eq!(e.code(), "invalid_request", "{bad}");
    }
    let b: BatchRequest =
        parse_json(br#"{"data":{"a":"1"},"baseVersions":{"a":4.0},"updatedAt":{"a":9.0}}"#)
            .unwrap();
    assert_eq!((b.base_versions["a"], b.updated_at["a"]), (4, 9));
    let r: RestoreRequest = parse_json(br#"{"version":2.0}"#).unwrap();
    assert_eq!(r.version, 2);
    assert!(matches!(
        parse_frame(r#"{"type":"hello","since":4.0}"#),
        Ok(Incoming::Hello { since: 4, .. })
    ));
    let frame = r#"{"type":"put","key":"k","value":"v","baseVersion":2.0,"requestId":"r"}"#;
    let Ok(Incoming::Write { write, .. }) = parse_frame(frame) else {
        panic!("{frame}");
    };
    assert_eq!(write.base_version, Some(2));
}

#[test]
fn batch_validation() {
    let b: BatchRequest = parse_json(
        br#"{"data":{"a":"1","b":"2"},"baseVersions":{"a":4},"updatedAt":{"b":9},"deleted":["c"]}"#,
    )
    .unwrap();
    let (w, rid) = b.into_writes().unwrap();
    assert_eq!(rid, None);
    assert_eq!(w.len(), 3);
    assert_eq!(w[0].base_version, Some(4));
    assert_eq!(w[1].updated_at, Some(9));
    assert_eq!(w[2].value, None);

    let dup: BatchRequest = parse_json(br#"{"data":{"a":"1"},"deleted":["a"]}"#).unwrap();
    assert_eq!(dup.into_writes().unwrap_err().code(), "invalid_request");
    let bad_key: BatchRequest = parse_json(br#"{"data":{"":"1"}}"#).unwrap();
    assert_eq!(bad_key.into_writes().unwrap_err().code(), "invalid_key");
    let neg: BatchRequest = parse_json(br#"{"data":{"a":"1"},"updatedAt":{"a":-5}}"#).unwrap();
    assert_eq!(neg.into_writes().unwrap_err().code(), "invalid_request");
}

#[test]
fn frames() {
    assert!(matches!(
        parse_frame(r#"{"type":"hello","since":4}"#),
        Ok(Incoming::Hello { since: 4, .. })
    ));
    assert!(matches!(
        parse_frame(r#"{"type":"hello"}"#),
        Ok(Incoming::Hello { since: 0, .. })
    ));
    assert!(matches!(
        parse_frame(r#"{"type":"ping"}"#),
        Ok(Incoming::Ping)
    ));
    match parse_frame(r#"{"type":"put","key":"k","value":"v","baseVersion":2,"requestId":"r"}"#) {
        Ok(Incoming::Write { write, request_id }) => {
            assert_eq!(request_id, "r");
            assert_eq!(write.value.as_deref(), Some("v"));
            assert_eq!(write.base_version, Some(2));
        }
        other => panic!("{other:?}"),
    }
    match parse_frame(r#"{"type":"delete","key":"k","requestId":"r"}"#) {
        Ok(Incoming::Write { write, .. }) => assert_eq!(write.value, None),
        other => panic!("{other:?}"),
    }
    let code = |f: &str| parse_frame(f).unwrap_err().1.code();
    assert_eq!(code("{nope"), "invalid_json");
    assert_eq!(code(r#"{"type":"dance"}"#), "invalid_request");
    assert_eq!(code(r#"[1,2]"#), "invalid_request");
    assert_eq!(
        code(r#"{"type":"put","key":"k","requestId":"r"}"#),
        "invalid_request"
    );
    assert_eq!(
        code(r#"{"type":"put","key":"k","value":"v"}"#),
        "invalid_request"
    );
    assert_eq!(
        code(r#"{"type":"put","key":"","value":"v","requestId":"r"}"#),
        "invalid_key"
    );
    let (rid, _) =
        parse_frame(r#"{"type":"put","key":"","value":"v","requestId":"r9"}"#).unwrap_err();
    assert_eq!(rid.as_deref(), Some("r9"));
    let big = format!(
        r#"{{"type":"put","key":"k","value":"{}","requestId":"r"}}"#,
        "x".repeat(MAX_FRAME_BYTES)
    );
    assert_eq!(code(&big), "frame_too_large");
}

#[test]
fn server_messages_wire_shape() {
    let m = ServerMessage::Change(Change {
        key: "k".into(),
        value: None,
        version: 3,
        deleted: true,
        updated_at: 5,
        device_id: "d".into(),
        patch: None,
        list: None,
    });
    assert_eq!(
        m.to_json(),
        r#"{"type":"change","key":"k","value":null,"version":3,"deleted":true,"updatedAt":5,"deviceId":"d"}"#
    );
    assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
    let ack = ack_from_answer(
        "r1",
        r#"{"success":true,"key":"k","version":7,"conflict":null}"#,
    );
    assert_eq!(
        ack.to_json(),
        r#"{"type":"ack","requestId":"r1","key":"k","version":7,"conflict":null}"#
    );
    let e = ServerMessage::error(Some("r".into()), &SyncError::InvalidKey("bad".into()));
    assert_eq!(
        e.to_json(),
        r#"{"type":"error","requestId":"r","code":"invalid_key","message":"bad"}"#
    );
}

/// The fixture the JS client's tests read too: every frame and answer
/// round-trips through the Rust types unchanged.
#[test]
fn shared_fixtures_round_trip() {
    let f: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/protocol.json")).unwrap();
    for frame in f["client"].as_array().unwrap() {
        assert!(parse_frame(&frame.to_string()).is_ok(), "{frame}");
    }
    for frame in f["server"].as_array().unwrap() {
        let typed: ServerMessage = serde_json::from_value(frame.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), frame);
    }
    fn round_trip<T: Serialize + for<'de> Deserialize<'de>>(v: &serde_json::Value) {
        let typed: T = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&typed).unwrap(), v);
    }
    round_trip::<WriteResponse>(&f["rest"]["write"]);
    round_trip::<BatchResponse>(&f["rest"]["batch"]);
    round_trip::<SnapshotResponse>(&f["rest"]["snapshot"]);
    round_trip::<AuthResponse>(&f["rest"]["auth"]);
    let e = SyncError::InvalidKey("key must not be empty".into());
    assert_eq!(serde_json::to_value(e.body()).unwrap(), f["rest"]["error"]);
}

/// The record-patch frames of the fixture: the client's parse, the
/// server's `change` with a patch is what `patch_json` writes.
#[test]
fn shared_patch_fixtures() {
    let f: serde_json::Value =
        serde_json::from_str(include_str!("../../tests/fixtures/protocol.json")).unwrap();
    let client = f["patchClient"].as_array().unwrap();
    assert!(matches!(
        parse_frame(&client[0].to_string()),
        Ok(Incoming::Hello {
            since: 12,
            patches: true
        })
    ));
    let Ok(Incoming::Write { write, request_id }) = parse_frame(&client[1].to_string()) else {
        panic!("patch frame refused");
    };
    assert_eq!((request_id.as_str(), write.base_version), ("r-7", Some(12)));
    assert_eq!(write.value, None);
    let patch = write.patch.unwrap();
    assert_eq!(
        patch.upserts,
        [(
            "inv-3".to_string(),
            r#"{"id":"inv-3","amount":120,"updatedAt":1700000000000}"#.to_string()
        )]
    );
    assert_eq!(patch.removed, ["inv-9", "4"], "a number id as written");
    assert_eq!(patch.after, [("inv-3".into(), Some("inv-2".into()))]);
    let server = f["patchServer"].as_array().unwrap();
    let change = Change {
        key: "invoices".into(),
        value: None,
        version: 13,
        deleted: false,
        updated_at: 1700000000000,
        device_id: "d-1".into(),
        patch: Some(std::rc::Rc::new((
            12,
            crate::records::Patch {
                upserts: vec![("inv-3".into(), r#"{"id":"inv-3","amount":120}"#.into())],
                removed: vec!["inv-9".into()],
                after: vec![("inv-3".into(), Some("inv-2".into()))],
            },
        ))),
        list: None,
    };
    let json: serde_json::Value = serde_json::from_str(&change.patch_json()).unwrap();
    assert_eq!(json, server[1]);
    let changes: ServerMessage = serde_json::from_value(server[0].clone()).unwrap();
    assert!(matches!(
        changes,
        ServerMessage::Changes {
            patches: Some(true),
            ..
        }
    ));
    let e = SyncError::NotRecords {
        key: "invoices".into(),
    };
    assert_eq!(server[2]["code"], e.code());
    // Bad patch frames are refused with their requestId.
    for bad in [
        r#"{"type":"patch","key":"k","requestId":"r","baseVersion":1,"upserts":[{"x":1}],"removed":[]}"#,
        r#"{"type":"patch","key":"k","requestId":"r","baseVersion":1,"upserts":[[1]],"removed":[]}"#,
        r#"{"type":"patch","key":"k","requestId":"r","baseVersion":1,"upserts":[{"id":1},{"id":"1"}],"removed":[]}"#,
        r#"{"type":"patch","key":"k","requestId":"r","upserts":[],"removed":[]}"#,
        r#"{"type":"patch","key":"k","requestId":"r","baseVersion":1,"upserts":[],"removed":[true]}"#,
        r#"{"type":"patch","key":"","requestId":"r","baseVersion":1,"upserts":[],"removed":[]}"#,
    ] {
        let Err((rid, e)) = parse_frame(bad) else {
            panic!("{bad} accepted");
        };
        assert_eq!(rid.as_deref(), Some("r"), "{bad}");
        assert_eq!(e.status(), 400, "{bad}");
    }
}

#[test]
fn subprotocol_offer() {
    let (ours, token) = ws_offer("alternassist-sync.v1, bearer.abc_DEF-1");
    assert!(ours);
    assert_eq!(token, Some("abc_DEF-1"));
    assert_eq!(ws_offer("bearer.x"), (false, Some("x")));
    assert_eq!(ws_offer("alternassist-sync.v1"), (true, None));
}

#[test]
fn conflict_wire_shape() {
    let c = Conflict {
        key: "k".into(),
        resolution: Resolution::LastWriteWins,
        winner: Winner::Stored,
        version: 3,
        stored_version: 3,
        base_version: Some(1),
        incoming_updated_at: 1,
        stored_updated_at: 2,
        records: Vec::new(),
    };
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["resolution"], "last-write-wins");
    assert_eq!(v["winner"], "stored");
    assert_eq!(v["storedVersion"], 3);
    assert_eq!(v["incomingUpdatedAt"], 1);
}
