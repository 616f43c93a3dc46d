//! The operator CLI: `pyxis kv put|get|ls|del`, `pyxis snapshot save|restore`, concurrent
//! `pyxis traffic` edits, and `pyxis traffic drain|shift` over a policy that has expired.
//!
//! Each command runs as its own process against servers started by the harness; the
//! server side of the same operations is covered over HTTP in the `store_*` modules.

use std::time::Duration;

use bytes::Bytes;
use harness::{Cluster, Proc, reserve_ports, run_cmd, wait_healthy};
use pyxis_client::api::RangeResponse;

/// A CLI command should finish quickly; this bound is for a loaded CI machine.
const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// `pyxis kv put` then `get` prints the value and `ls` lists the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_ls_del() {
    let c = Cluster::single(&[]).await.unwrap();
    let ep = c.endpoints();
    let pyxis = c.bin();

    run_cmd(
        pyxis,
        ["kv", "put", "/cli/a", "hello", "--endpoints", &ep],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let via_http = c.api().get(&c.url(1), "/cli/a").await.unwrap();
    assert_eq!(via_http.text(), "hello", "HTTP read after `pyxis kv put`");

    let out = run_cmd(
        pyxis,
        ["kv", "get", "/cli/a", "--endpoints", &ep],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    assert_eq!(out.stdout.trim_end(), "hello", "stderr: {}", out.stderr);

    let out = run_cmd(
        pyxis,
        ["kv", "ls", "/cli/", "--endpoints", &ep],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    assert!(
        out.stdout.lines().any(|l| l.contains("/cli/a")),
        "`kv ls /cli/` does not list /cli/a:\n{}",
        out.stdout
    );

    run_cmd(
        pyxis,
        ["kv", "del", "/cli/a", "--endpoints", &ep],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let gone = c.api().get(&c.url(1), "/cli/a").await.unwrap();
    assert_eq!(gone.status, 404, "after `kv del`: {}", gone.text());
}

/// `pyxis snapshot save` from a live 3-node cluster, `pyxis snapshot restore` into a fresh
/// data dir, and a single node started on it serves the same keys and values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_and_restore() {
    let c = Cluster::start(3).await.unwrap();
    let api = c.api();
    let leader = c.leader().await.unwrap();
    let url = c.url(c.followers(leader)[0]);
    api.put_ok(&url, "/backup/a", "alpha").await.unwrap();
    api.put_ok(&url, "/backup/bin", Bytes::from_static(&[0xff, 0x00, 0x01]))
        .await
        .unwrap();
    for v in ["c1", "c2", "c3"] {
        api.put_ok(&url, "/backup/c", v).await.unwrap();
    }
    api.put_ok(&url, "/backup/gone", "x").await.unwrap();
    api.delete_ok(&url, "/backup/gone").await.unwrap();
    for i in 0..50 {
        api.put_ok(&url, &format!("/other/k{i:02}"), format!("v{i}"))
            .await
            .unwrap();
    }
    let original = api.range_ok(&c.url(leader), "/").await.unwrap();

    let file = c.dir().join("backup.snap");
    let file_arg = file.display().to_string();
    let pyxis = c.bin();
    run_cmd(
        pyxis,
        ["snapshot", "save", &file_arg, "--endpoints", &c.endpoints()],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();
    let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 0,
        "snapshot file {} is missing or empty",
        file.display()
    );

    let data_dir = c.dir().join("restored");
    let data_arg = data_dir.display().to_string();
    let addr = format!("127.0.0.1:{}", reserve_ports(1)[0]);
    run_cmd(
        pyxis,
        [
            "snapshot",
            "restore",
            &file_arg,
            "--data-dir",
            &data_arg,
            "--id",
            "1",
            "--listen",
            &addr,
        ],
        CMD_TIMEOUT,
    )
    .await
    .unwrap()
    .success()
    .unwrap();

    let mut restored = Proc::spawn_in(
        "restored",
        pyxis,
        [
            "server",
            "--data-dir",
            &data_arg,
            "--id",
            "1",
            "--listen",
            &addr,
        ],
        &c.dir().join("logs"),
    )
    .unwrap();
    let restored_url = format!("http://{addr}");
    wait_healthy(&mut restored, &restored_url).await.unwrap();
    let listing = harness::eventually(Duration::from_secs(60), async || {
        api.range_ok(&restored_url, "/").await
    })
    .await
    .unwrap();
    assert_eq!(
        key_values(&listing),
        key_values(&original),
        "restored node serves different data"
    );
}

/// The `(key, value)` pairs of a listing, without revisions.
fn key_values(listing: &RangeResponse) -> Vec<(String, Bytes)> {
    listing
        .entries
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect()
}

/// Operators running `pyxis traffic drain|shift` at the same moment all keep their change:
/// each read-modify-write is a compare-and-set that reads again when another one won.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_traffic_edits_all_land() {
    let c = Cluster::single(&[]).await.unwrap();
    let ep = c.endpoints();
    let pyxis = c.bin();
    let drained: Vec<String> = (1..=6).map(|i| format!("web-{i}")).collect();
    let mut edits: Vec<Vec<&str>> = drained
        .iter()
        .map(|id| vec!["traffic", "drain", "web", id])
        .collect();
    for (to, percent) in [("dc2", "25"), ("dc3", "10")] {
        edits.push(vec![
            "traffic",
            "shift",
            "web",
            "--from",
            "dc1",
            "--to",
            to,
            "--percent",
            percent,
        ]);
    }
    let runs = edits.into_iter().map(|mut args| {
        args.extend(["--endpoints", ep.as_str()]);
        run_cmd(pyxis, args, CMD_TIMEOUT)
    });
    for out in futures::future::join_all(runs).await {
        out.unwrap().success().unwrap();
    }

    let policy: serde_json::Value = c
        .api()
        .get_json(&c.url(1), "/v1/traffic/web")
        .await
        .unwrap();
    for id in &drained {
        assert_eq!(
            policy["overrides"][id]["drain"],
            serde_json::json!(true),
            "the drain of {id} was lost: {policy}"
        );
    }
    let mut shifts: Vec<(String, u64)> = policy["shifts"]
        .as_array()
        .unwrap_or_else(|| panic!("no shifts: {policy}"))
        .iter()
        .map(|s| {
            (
                s["to_dc"].as_str().unwrap_or("").to_owned(),
                s["percent"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    shifts.sort();
    assert_eq!(
        shifts,
        [("dc2".to_owned(), 25), ("dc3".to_owned(), 10)],
        "{policy}"
    );
}

/// `pyxis traffic shift --for` makes the policy expire (`expires_at` that far ahead), and a
/// bad datacenter name is refused naming the flag, with nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shift_for_a_while_sets_its_expiry() {
    let c = Cluster::single(&[]).await.unwrap();
    let ep = c.endpoints();
    let shift = |to: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "traffic",
            "shift",
            "web",
            "--from",
            "dc1",
            "--to",
            to,
            "--percent",
            "20",
        ];
        args.extend(extra);
        args.extend(["--endpoints", ep.as_str()]);
        run_cmd(c.bin(), args, CMD_TIMEOUT)
    };
    let bad = shift("Not_A_Dc", &[]).await.unwrap();
    assert!(!bad.status.success());
    assert!(bad.stderr.contains("--to"), "{}", bad.stderr);
    assert_eq!(
        c.api()
            .get_path(&c.url(1), "/v1/traffic/web")
            .await
            .unwrap()
            .status,
        404
    );

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    shift("dc2", &["--for", "30m"])
        .await
        .unwrap()
        .success()
        .unwrap();
    let policy: serde_json::Value = c
        .api()
        .get_json(&c.url(1), "/v1/traffic/web")
        .await
        .unwrap();
    let at = policy["expires_at"]
        .as_u64()
        .unwrap_or_else(|| panic!("{policy}"));
    let ahead = at.saturating_sub(before);
    assert!(
        (29 * 60_000..=31 * 60_000).contains(&ahead),
        "expires {ahead} ms ahead: {policy}"
    );
    assert_eq!(policy["shifts"][0]["percent"], 20, "{policy}");
}

/// Unix milliseconds now, the unit of `expires_at`.
fn now_ms() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(now.as_millis()).unwrap()
}

/// `pyxis traffic drain` and `shift` over a policy whose forced shift expired a moment ago:
/// the expired policy is dropped (said on stderr), so the drain is written without the past
/// `expires_at` that would make routing ignore it, and a new `--for` does not bring the
/// expired shift back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_edits_over_an_expired_shift_drop_it() {
    let c = Cluster::single(&[]).await.unwrap();
    let (api, url, ep) = (c.api(), c.url(1), c.endpoints());
    let expires_at = now_ms() + 1_000;
    for svc in ["web", "pay"] {
        let policy = serde_json::json!({
            "shifts": [{"from_dc": "dc1", "to_dc": "dc2", "percent": 50}],
            "overrides": {"old-1": {"weight": 5}},
            "expires_at": expires_at,
        });
        api.put_json(&url, &format!("/v1/traffic/{svc}"), &policy)
            .await
            .unwrap()
            .ok()
            .unwrap();
    }
    harness::eventually(Duration::from_secs(5), async || {
        anyhow::ensure!(now_ms() > expires_at, "the shift has not expired yet");
        Ok(())
    })
    .await
    .unwrap();
    let traffic = async |args: &[&str]| {
        let mut args: Vec<&str> = [&["traffic"], args].concat();
        args.extend(["--endpoints", ep.as_str()]);
        run_cmd(c.bin(), args, CMD_TIMEOUT).await
    };

    let show = traffic(&["show", "web"]).await.unwrap().success().unwrap();
    assert!(
        show.stderr.contains("expired") && show.stderr.contains("no longer applies"),
        "show does not say the policy expired: {}",
        show.stderr
    );

    let out = traffic(&["drain", "web", "web-1"])
        .await
        .unwrap()
        .success()
        .unwrap();
    assert!(
        out.stderr.contains("expired") && out.stderr.contains("dropped 1 shift"),
        "the drop is not said on stderr: {}",
        out.stderr
    );
    let policy: serde_json::Value = api.get_json(&url, "/v1/traffic/web").await.unwrap();
    assert_eq!(
        policy["overrides"],
        serde_json::json!({"web-1": {"drain": true}}),
        "{policy}"
    );
    assert_eq!(policy["shifts"], serde_json::json!([]), "{policy}");
    assert!(policy.get("expires_at").is_none(), "{policy}");

    traffic(&[
        "shift",
        "pay",
        "--from",
        "dc1",
        "--to",
        "dc3",
        "--percent",
        "10",
        "--for",
        "30m",
    ])
    .await
    .unwrap()
    .success()
    .unwrap();
    let policy: serde_json::Value = api.get_json(&url, "/v1/traffic/pay").await.unwrap();
    assert_eq!(
        policy["shifts"],
        serde_json::json!([{"from_dc": "dc1", "to_dc": "dc3", "percent": 10}]),
        "the expired shift came back: {policy}"
    );
    assert_eq!(policy["overrides"], serde_json::json!({}), "{policy}");
    let ahead = policy["expires_at"]
        .as_u64()
        .unwrap_or(0)
        .saturating_sub(now_ms());
    assert!(ahead > 29 * 60_000, "expires {ahead} ms ahead: {policy}");
}
