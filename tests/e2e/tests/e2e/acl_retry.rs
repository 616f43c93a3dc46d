//! ACL writes whose reply is lost: `acl bootstrap` and `acl token create` through
//! `pyxis_client::Client` behind a proxy that swallows replies. The retry must answer the
//! token the first attempt stored (its secret works), never a secret the store does not
//! hold, and store one token, not two.

use std::time::Duration;

use harness::acl::Authed;
use harness::{Cluster, Proxy};
use pyxis_client::api::{ErrorCode, Role, TokenCreateRequest, TokenInfo, TokenList};
use pyxis_client::secret::new_secret;
use pyxis_client::{Client, ClientOptions};
use reqwest::Method;

/// A client that reaches node 1 of `c` only through `relay`, with `token` if any.
fn through(relay: &Proxy, token: Option<&str>) -> Client {
    let mut options = ClientOptions::default().retry_budget(Duration::from_secs(20));
    if let Some(t) = token {
        options = options.token(t);
    }
    Client::with_options(vec![relay.addr().to_owned()], options).unwrap()
}

/// The token `secret` names, asked of the node at `addr`.
async fn whoami(addr: &str, secret: &str) -> TokenInfo {
    Client::with_options(
        vec![addr.to_owned()],
        ClientOptions::default().token(secret),
    )
    .unwrap()
    .acl_token_self()
    .await
    .unwrap()
}

/// Whether node 1 says ACLs are on.
async fn acl_enabled(c: &Cluster) -> bool {
    Client::new(vec![c.addr(1).to_owned()])
        .unwrap()
        .acl_status()
        .await
        .unwrap()
        .enabled
}

/// Every stored token, read with `admin`.
async fn tokens(c: &Cluster, admin: &str) -> TokenList {
    Authed::new()
        .call(Method::GET, &c.url(1), "/v1/acl/tokens", Some(admin), None)
        .await
        .unwrap()
        .ok()
        .unwrap()
        .json()
        .unwrap()
}

/// The bootstrap's reply is lost twice; the client's repeats answer the stored admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_whose_reply_is_lost_answers_the_stored_token() {
    let c = Cluster::start(3).await.unwrap();
    // The route is open to anyone: a body far past a token's size is refused unread.
    let huge = format!(r#"{{"secret": "{}"}}"#, "a".repeat(1 << 20));
    let r = Authed::new()
        .call(
            Method::POST,
            &c.url(1),
            "/v1/acl/bootstrap",
            None,
            Some(&huge),
        )
        .await
        .unwrap();
    let e = crate::acl::refused(&r, 413, ErrorCode::ValueTooLarge, "a huge bootstrap body");
    assert!(e.message.starts_with("bootstrap body:"), "{}", e.message);
    assert!(!acl_enabled(&c).await, "ACLs turned on by a refused body");
    let relay = Proxy::start(c.addr(1)).await.unwrap();
    relay.lose_replies(b"POST /v1/acl/bootstrap", 2);
    let created = through(&relay, None).acl_bootstrap().await.unwrap();
    assert_eq!(relay.replies_lost(), 2);
    let admin = created.secret.as_str();
    let list = tokens(&c, admin).await;
    assert_eq!(list.tokens.len(), 1, "one bootstrap token: {list:?}");
    assert_eq!(list.tokens[0], created.token);
    // The secret answered is the stored one, on every node.
    for n in 1..=3 {
        let me = whoami(c.addr(n), admin).await;
        assert_eq!(
            (me.role, &me.accessor),
            (Role::Admin, &created.token.accessor)
        );
    }
    // A second bootstrap with another secret is still refused.
    let again = Client::new(vec![c.addr(2).to_owned()])
        .unwrap()
        .acl_bootstrap()
        .await;
    assert!(
        again
            .as_ref()
            .is_err_and(|e| e.to_string().contains("already bootstrapped")),
        "{again:?}"
    );
}

/// A token create whose reply is lost: one token, and the secret answered works. A repeat
/// with the same secret but another role is a 409 naming the secret; a bad secret a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_create_whose_reply_is_lost_stores_one_token() {
    let c = Cluster::start(3).await.unwrap();
    let admin = Authed::new().bootstrap(&c.url(1)).await.unwrap();
    let relay = Proxy::start(c.addr(1)).await.unwrap();
    relay.lose_replies(b"POST /v1/acl/tokens", 2);
    let request = TokenCreateRequest {
        role: Role::Register,
        node: Some("web-7".into()),
        description: "agent on web-7".into(),
        secret: None,
    };
    let created = through(&relay, Some(&admin))
        .acl_token_create(&request)
        .await
        .unwrap();
    assert_eq!(relay.replies_lost(), 2);
    let list = tokens(&c, &admin).await;
    assert_eq!(
        list.tokens.len(),
        2,
        "bootstrap + one register token: {list:?}"
    );
    assert!(list.tokens.contains(&created.token), "{list:?}");
    let me = whoami(c.addr(3), &created.secret).await;
    assert_eq!(me, created.token);

    // The same secret sent again by hand, same request: the same token (idempotent).
    // `POST /v1/acl/tokens` through node 2 for web-7's agent, with this role and secret.
    let post = async |role: &str, secret: &str| {
        let mut b = serde_json::json!({
            "role": role, "node": "web-7", "description": "agent on web-7", "secret": secret,
        });
        if role != "register" {
            b.as_object_mut().map(|o| o.remove("node"));
        }
        Authed::new()
            .call(
                Method::POST,
                &c.url(2),
                "/v1/acl/tokens",
                Some(&admin),
                Some(&b.to_string()),
            )
            .await
            .unwrap()
    };
    let same = post("register", &created.secret).await;
    assert_eq!(same.status, 200, "{}", same.text());
    assert!(
        same.text().contains(&created.token.accessor),
        "{}",
        same.text()
    );
    // The same secret for another token: refused, naming the field.
    let other = post("operator", &created.secret).await;
    assert_eq!(other.status, 409, "{}", other.text());
    assert!(other.text().contains("secret"), "{}", other.text());
    // A secret of the wrong shape: 400 naming the field.
    let bad = post("register", &new_secret().to_uppercase()).await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert!(bad.text().contains("secret:"), "{}", bad.text());
    assert_eq!(
        tokens(&c, &admin).await.tokens.len(),
        2,
        "nothing more stored"
    );
}
