//! The operator CLI: `pyxis kv put|get|ls|del` and `pyxis snapshot save|restore`.
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
