//! The console's agents page with a real `ns-agent` running a real service: the agent is
//! listed in sync with its service passing and its last check's output on the service page;
//! frozen with SIGSTOP, its last contact keeps growing on the page (ticked client-side
//! between re-reads), it is marked stale, and it disappears when its lease expires.

use std::path::Path;

use harness::{Agent, write_script};

use crate::console::Console;

/// The agent's node name.
const NODE: &str = "host-7";

/// Writes a service `shop` whose health check prints a marker and passes.
fn shop(dir: &Path) -> anyhow::Result<()> {
    let d = dir.display();
    write_script(
        &dir.join("shop/start.sh"),
        &format!("sleep 600 >/dev/null 2>&1 &\necho $! > {d}/shop.pid"),
    )?;
    write_script(
        &dir.join("shop/stop.sh"),
        &format!("kill $(cat {d}/shop.pid) 2>/dev/null; exit 0"),
    )?;
    write_script(&dir.join("shop/health.sh"), "echo shop-is-fine\nexit 0")?;
    std::fs::create_dir_all(dir.join("services.d"))?;
    std::fs::write(
        dir.join("services.d/shop.toml"),
        "name = \"shop\"\nport = 9100\n[health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\n\
         fail_after = 3\npass_after = 2\n[scripts]\nstart = \"../shop/start.sh\"\n\
         stop = \"../shop/stop.sh\"\nhealth = \"../shop/health.sh\"\n",
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_agents_page_shows_a_stopped_agent_going_stale() {
    let c = Console::start().await;
    let dir = tempfile::Builder::new()
        .prefix("console-agent-")
        .tempdir()
        .unwrap();
    shop(dir.path()).unwrap();
    // A 9 s lease is kept alive every 3 s, inside the page's 5 s staleness mark, and lives
    // on for 4 s after the agent is marked stale.
    let config = format!(
        "node = \"{NODE}\"\ndatacenter = \"dc1\"\nadvertise = \"127.0.0.1\"\n\
         store = [\"{}\"]\nservices_dir = \"services.d\"\nhttp = \"127.0.0.1:0\"\n\
         lease_ttl = \"9s\"\ndrain = \"100ms\"\nrescan_interval = \"1s\"\n\
         status_interval = \"1s\"\n",
        c.url().trim_start_matches("http://")
    );
    let mut agent = Agent::start(dir.path(), &config, &[]).await.unwrap();

    c.open("#/agents").await;
    let row = format!("tr[data-node='{NODE}']");
    c.wait_text(&format!("{row} .sync"), |t| t == "in sync")
        .await;
    c.wait_text(&row, |t| t.contains("passing 1") && t.contains("dc1"))
        .await;

    // The service page shows the check output the agent published.
    c.open("#/service/shop").await;
    c.wait_text("#instance-table", |t| t.contains("shop-is-fine"))
        .await;
    c.open("#/agents").await;
    c.wait_text(&format!("{row} .sync"), |t| t == "in sync")
        .await;
    c.shot("console-agents").await;

    agent.proc().pause().unwrap();
    // Its last contact keeps growing on the page, then it is marked stale, still listed.
    let first = c.wait_text(&format!("{row} .last-contact"), |_| true).await;
    c.wait_text(&format!("{row} .last-contact"), |t| t != first)
        .await;
    c.wait_text(&format!("{row} .sync"), |t| t == "stale").await;
    c.shot("console-agents-stale").await;
    c.wait("#agent-table-empty").await;
    agent.proc().resume().unwrap();
}
