//! Devices: the list of signed-in devices with who is online, and revoking
//! one (its token stops at once, its sockets close with 4001).

use crate::client::{Client, Mismatches, Note, User};
use crate::live::open;
use crate::server::Server;
use crate::Test;
use libtest_mimic::Failed;
use serde_json::{json, Value};

pub fn tests() -> Vec<Test> {
    vec![
        Test::main("devices::list", list),
        Test::main("devices::revoke_another", revoke_another),
        Test::main("devices::revoke_refusals", revoke_refusals),
        Test::main("devices::revoke_self", revoke_self),
    ]
}

fn login_as(c: &Client, user: &User, name: &str) -> Result<User, Failed> {
    let r = c
        .req("POST", "/api/auth/login")
        .json(&json!({"email": user.email, "password": user.password, "deviceName": name}))
        .send()?;
    let v = r.expect_ok(200)?;
    Ok(User {
        token: v["token"].as_str().unwrap_or_default().to_string(),
        device_id: v["deviceId"].as_str().unwrap_or_default().to_string(),
        ..user.clone()
    })
}

fn devices(c: &Client, token: &str) -> Result<Vec<Value>, Failed> {
    let v = c
        .req("GET", "/api/devices")
        .bearer(token)
        .send()?
        .expect_ok(200)?;
    v["devices"]
        .as_array()
        .cloned()
        .ok_or_else(|| Failed::from(format!("no device list in {v}")))
}

fn ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn list(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("devices-list")?;
    let laptop = login_as(&c, &a, "Laptop")?;
    let phone = login_as(&c, &a, "Phone 📱")?;
    let mut socket = open(s, &phone.token)?;
    socket.ping()?;

    let list = devices(&c, &a.token)?;
    ensure_eq!(
        ids(&list),
        vec![
            a.device_id.clone(),
            laptop.device_id.clone(),
            phone.device_id.clone()
        ],
        "oldest first"
    );
    let shape: Vec<(Value, Value, Value)> = list
        .iter()
        .map(|d| (d["name"].clone(), d["current"].clone(), d["online"].clone()))
        .collect();
    ensure_eq!(
        shape,
        vec![
            (json!("api test"), json!(true), json!(false)),
            (json!("Laptop"), json!(false), json!(false)),
            (json!("Phone 📱"), json!(false), json!(true)),
        ],
        "name, current, online"
    );
    for d in &list {
        let created = d["createdAt"].as_i64().unwrap_or(0);
        let seen = d["lastSeenAt"].as_i64().unwrap_or(0);
        ensure!(created > 0 && seen >= created, "times of {d}");
        let mut fields: Vec<&String> = d
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        fields.sort();
        ensure_eq!(
            fields,
            vec!["createdAt", "current", "id", "lastSeenAt", "name", "online"],
            "device fields (no token or hash)"
        );
    }
    // Another user sees only their own device.
    let b = c.register("devices-other")?;
    ensure_eq!(
        ids(&devices(&c, &b.token)?),
        vec![b.device_id.clone()],
        "other user"
    );
    c.req("GET", "/api/devices")
        .send()?
        .expect_error(401, "unauthorized")?;
    socket.close();
    Ok(())
}

fn revoke_another(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("devices-revoke")?;
    let phone = login_as(&c, &a, "Phone")?;
    let mut phone_socket = open(s, &phone.token)?;
    let mut own_socket = open(s, &a.token)?;
    phone_socket.ping()?;

    let v = c
        .req("DELETE", &format!("/api/devices/{}", phone.device_id))
        .bearer(&a.token)
        .send()?
        .expect_ok(200)?;
    ensure_eq!(v, json!({"success": true}), "revoke answer");
    ensure_eq!(
        phone_socket.wait_close()?,
        4001,
        "the revoked device's socket"
    );
    c.req("GET", "/api/sync")
        .bearer(&phone.token)
        .send()?
        .expect_error(401, "unauthorized")?;
    ensure_eq!(
        ids(&devices(&c, &a.token)?),
        vec![a.device_id.clone()],
        "after revoke"
    );
    // The caller's own socket stays up and usable.
    own_socket.ping()?;
    own_socket.put("k", "still here", "after-revoke")?;
    own_socket.close();
    // Revoking it again: it is no longer a signed-in device.
    c.req("DELETE", &format!("/api/devices/{}", phone.device_id))
        .bearer(&a.token)
        .send()?
        .expect_error(404, "not_found")?;
    Ok(())
}

fn revoke_refusals(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("devices-bad")?;
    let b = c.register("devices-victim")?;
    let mut bad = Mismatches::default();
    for (what, id) in [
        ("another user's device", b.device_id.as_str()),
        ("unknown id", "00000000-0000-0000-0000-000000000000"),
        ("not an id", "%27%3B%20DROP%20TABLE%20devices%3B--"),
    ] {
        c.req("DELETE", &format!("/api/devices/{id}"))
            .bearer(&a.token)
            .send()?
            .expect_error(404, "not_found")
            .note(&mut bad, what);
    }
    c.req("DELETE", &format!("/api/devices/{}", b.device_id))
        .send()?
        .expect_error(401, "unauthorized")
        .note(&mut bad, "no token");
    c.req("GET", &format!("/api/devices/{}", b.device_id))
        .bearer(&a.token)
        .send()?
        .expect_error(405, "method_not_allowed")
        .note(&mut bad, "GET one device");
    c.req("DELETE", "/api/devices")
        .bearer(&a.token)
        .send()?
        .expect_error(405, "method_not_allowed")
        .note(&mut bad, "DELETE the list");
    bad.finish()?;
    // The other user's device still works.
    ensure_eq!(
        ids(&devices(&c, &b.token)?),
        vec![b.device_id.clone()],
        "victim"
    );
    Ok(())
}

fn revoke_self(s: &Server) -> Result<(), Failed> {
    let c = Client::new(s);
    let a = c.register("devices-self")?;
    let other = login_as(&c, &a, "Other")?;
    c.req("DELETE", &format!("/api/devices/{}", a.device_id))
        .bearer(&a.token)
        .send()?
        .expect_ok(200)?;
    c.req("GET", "/api/devices")
        .bearer(&a.token)
        .send()?
        .expect_error(401, "unauthorized")?;
    ensure_eq!(
        ids(&devices(&c, &other.token)?),
        vec![other.device_id.clone()],
        "rest"
    );
    Ok(())
}
