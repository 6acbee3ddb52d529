//! Request rules on routes: matching on a query parameter, the method and
//! the client's network; changing request and response headers; answering
//! without a backend (a fixed response, a redirect); a rate limit on one
//! route.

use hyper::StatusCode;

use crate::fixture::*;

on_both_paths! {
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_match_query_method_and_network_rewrite_headers_and_answer_alone() {
    let ip = unique_ip();
    let main = HttpBackend::start("main", ip).await;
    let v2 = HttpBackend::start("v2", ip).await;
    let admin = HttpBackend::start("admin", ip).await;
    let writes = HttpBackend::start("writes", ip).await;
    let office = unique_ip();
    let seed = format!(
        "[[frontend]]\nname = \"web\"\nport = 8080\nprotocol = \"http\"\npool = \"main\"\n\
           [[frontend.route]]\n  query = {{ name = \"version\", value = \"2\" }}\n  pool = \"v2\"\n\
           [[frontend.route]]\n  path_prefix = \"/admin/\"\n  source = [\"{office}/32\", \"10.0.0.0/8\"]\n  pool = \"admin\"\n\
           [[frontend.route]]\n  path_prefix = \"/admin/\"\n  respond = {{ status = 403, body = \"office network only\\n\" }}\n\
             response_headers = {{ set = {{ cache-control = \"no-store\" }} }}\n\
           [[frontend.route]]\n  methods = [\"POST\", \"DELETE\"]\n  pool = \"writes\"\n\
           [[frontend.route]]\n  path_prefix = \"/old/\"\n  redirect = {{ location = \"https://new.example/\", status = 301, keep_path = true }}\n\
           [[frontend.route]]\n  path_prefix = \"/tagged/\"\n  pool = \"main\"\n\
             request_headers = {{ remove = [\"x-debug\"], set = {{ x-env = \"green\" }}, add = {{ x-trace = \"raftlb\" }} }}\n\
             response_headers = {{ remove = [\"x-backend\"], set = {{ cache-control = \"no-store\" }} }}\n\
           [[frontend.route]]\n  path_prefix = \"/search\"\n  rate_limit = {{ requests_per_second = 1, burst = 3 }}\n  pool = \"main\"\n\n\
         [[pool]]\nname = \"main\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"v2\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"admin\"\n  [[pool.backend]]\n  address = \"{}\"\n\n\
         [[pool]]\nname = \"writes\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        main.address, v2.address, admin.address, writes.address
    );
    let node = Node::start(&seed).await;
    let url = |path: &str| node.url(8080, path);
    let anyone = client();
    let from_office = client_from(office);
    let backend = |answer: &(StatusCode, hyper::HeaderMap, String)| {
        assert_eq!(answer.0, StatusCode::OK, "{}", answer.2);
        answer.1["x-backend"].to_str().expect("name").to_string()
    };

    // Query: an exact value (percent-decoded), else the next route.
    let seen = exchange(&anyone, "GET", &url("/list?a=1&version=2"), &[]).await;
    assert_eq!(backend(&seen), "v2");
    let seen = exchange(&anyone, "GET", &url("/list?version=%32"), &[]).await;
    assert_eq!(backend(&seen), "v2");
    let seen = exchange(&anyone, "GET", &url("/list?version=3"), &[]).await;
    assert_eq!(backend(&seen), "main");

    // Source network: the office reaches /admin/, anyone else gets the
    // route after it, a fixed 403 with its body, and no backend sees it.
    let seen = exchange(&from_office, "GET", &url("/admin/users"), &[]).await;
    assert_eq!(backend(&seen), "admin");
    let before = main.count() + admin.count();
    let (status, headers, body) = exchange(&anyone, "GET", &url("/admin/users"), &[]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body, "office network only\n");
    assert_eq!(headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-store");
    // Other spellings of the same path meet the same rules (and the
    // backend gets the path in its one spelling).
    for spelling in [
        "/%61dmin/users",
        "//admin/users",
        "/x/../admin/users",
        "/./admin/users",
    ] {
        let (status, _, _) = exchange(&anyone, "GET", &url(spelling), &[]).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{spelling}");
    }
    assert_eq!(main.count() + admin.count(), before);
    let seen = exchange(&from_office, "GET", &url("//admin/./users"), &[]).await;
    assert_eq!(backend(&seen), "admin");
    assert_eq!(
        admin.requests().pop().expect("request").path,
        "/admin/users"
    );

    // Method.
    let seen = exchange(&anyone, "POST", &url("/items"), &[]).await;
    assert_eq!(backend(&seen), "writes");
    let seen = exchange(&anyone, "DELETE", &url("/items/1"), &[]).await;
    assert_eq!(backend(&seen), "writes");
    let seen = exchange(&anyone, "PUT", &url("/items/1"), &[]).await;
    assert_eq!(backend(&seen), "main");

    // Redirect, keeping path and query; a target that looks like another
    // host stays a path.
    let (status, headers, _) = exchange(&anyone, "GET", &url("/old/page?id=7"), &[]).await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "https://new.example/old/page?id=7");
    let (_, headers, _) = exchange(&anyone, "GET", &url("/old//evil.example/x"), &[]).await;
    assert_eq!(
        headers["location"],
        "https://new.example/old/evil.example/x"
    );

    // Header rewriting both ways.
    let (status, headers, body) = exchange(
        &anyone,
        "GET",
        &url("/tagged/x"),
        &[("x-debug", "1"), ("x-env", "blue"), ("x-trace", "client")],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("main "), "{body}");
    assert!(headers.get("x-backend").is_none(), "{headers:?}");
    assert_eq!(headers["cache-control"], "no-store");
    let sent = main.requests().pop().expect("request");
    assert_eq!(sent.path, "/tagged/x");
    assert!(sent.headers.get("x-debug").is_none());
    assert_eq!(sent.headers["x-env"], "green");
    let traces: Vec<_> = sent.headers.get_all("x-trace").iter().collect();
    assert_eq!(traces, ["client", "raftlb"]);

    // A rate limit on one route: the client over it gets 429 there and is
    // served elsewhere; another client is served there.
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..8 {
        let (status, headers, _) = exchange(&anyone, "GET", &url("/search?q=a"), &[]).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            retry_after = headers.get("retry-after").cloned();
        }
        statuses.push(status.as_u16());
    }
    assert!(statuses[..3].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(
        retry_after.as_ref().map(|v| v.to_str().ok()),
        Some(Some("1"))
    );
    let seen = exchange(&anyone, "GET", &url("/other"), &[]).await;
    assert_eq!(backend(&seen), "main");
    let seen = exchange(&from_office, "GET", &url("/search?q=a"), &[]).await;
    assert_eq!(backend(&seen), "main");
    assert_eq!(
        node.metric("raftlb_frontend_rate_limited_total{frontend=\"web\"}"),
        Some(statuses.iter().filter(|s| **s == 429).count() as f64)
    );

    // A bad rule is refused with its field named, and changes nothing.
    let version = node.config_version();
    let file = node.dir.join("bad.toml");
    for (from, to, field) in [
        (
            "methods = [\"POST\", \"DELETE\"]",
            "methods = [\"post\"]",
            "frontend[web].route[3].methods",
        ),
        (
            "set = {{ x-env = \"green\" }}",
            "set = {{ host = \"other\" }}",
            "frontend[web].route[5].request_headers",
        ),
    ] {
        let bad = seed.replace(
            &from.replace("{{", "{").replace("}}", "}"),
            &to.replace("{{", "{").replace("}}", "}"),
        );
        assert_ne!(bad, seed, "{from}");
        std::fs::write(&file, bad).expect("write");
        let (code, _, err) = ctl(
            &node.api(),
            &["apply", "--file", file.to_str().expect("path")],
        );
        assert_ne!(code, 0);
        assert!(err.contains(field), "{err}");
    }
    assert_eq!(node.config_version(), version);
}
}
