//! The cluster state's checks and commands: what is accepted, what is
//! refused with its field named, and what each command changes.

use super::*;
use crate::config::AdminState;

const BASE: &str = r#"
[[frontend]]
name = "web"
port = 8080
protocol = "http"
pool = "web"
  [[frontend.route]]
  path_prefix = "/api/"
  pool = "api"

[[pool]]
name = "web"
  [[pool.backend]]
  address = "127.0.0.1:9001"
  [[pool.backend]]
  address = "127.0.0.1:9002"

[[pool]]
name = "api"
algorithm = "maglev"
hash_key = "header:X-User"
  [[pool.backend]]
  address = "127.0.0.1:9101"
"#;

fn spec_from(text: &str) -> ClusterSpec {
    toml::from_str(text).expect("test spec parses")
}

fn apply(text: &str) -> Result<u64, StateError> {
    ClusterState::default().dispatch(Command::ApplyConfig {
        spec: spec_from(text),
        if_version: None,
        note: None,
    })
}

fn invalid_field(result: Result<u64, StateError>) -> (String, String) {
    match result {
        Err(StateError::Invalid { field, value, .. }) => (field, value),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_drain_is_timed_from_the_change_that_began_it() {
    let mut state = ClusterState::default();
    let at = |time_ms| Origin {
        time_ms,
        caller: "test".into(),
    };
    let spec: ClusterSpec = toml::from_str(BASE).expect("spec");
    let backend = spec.pools[0].backends[0].address.clone();
    let pool = spec.pools[0].name.clone();
    state
        .apply(
            Command::ApplyConfig {
                spec,
                if_version: None,
                note: None,
            },
            at(1),
        )
        .expect("apply");
    let drain = |state: &mut ClusterState, admin_state, time_ms| {
        let command = Command::SetAdminState {
            pool: pool.clone(),
            address: backend.clone(),
            state: admin_state,
        };
        state.apply(command, at(time_ms)).expect("set");
    };
    assert_eq!(state.drain_started_ms(&pool, &backend), None);
    drain(&mut state, AdminState::Draining, 100);
    assert_eq!(state.drain_started_ms(&pool, &backend), Some(100));
    // Another change later keeps the start.
    drain(&mut state, AdminState::Active, 200);
    assert_eq!(state.drain_started_ms(&pool, &backend), None);
    drain(&mut state, AdminState::Draining, 300);
    let weight = Command::SetWeight {
        pool: pool.clone(),
        address: backend.clone(),
        weight: 7,
    };
    state.apply(weight, at(400)).expect("weight");
    assert_eq!(state.drain_started_ms(&pool, &backend), Some(300));
}

#[test]
fn valid_config_is_accepted() {
    assert_eq!(apply(BASE), Ok(1));
}

#[test]
fn route_to_unknown_pool_names_the_route() {
    let (field, value) = invalid_field(apply(&BASE.replace("pool = \"api\"", "pool = \"nope\"")));
    assert_eq!(field, "frontend[web].route[0].pool");
    assert_eq!(value, "nope");
}

#[test]
fn request_rules_are_checked_and_name_their_field() {
    let route = "  path_prefix = \"/api/\"\n  pool = \"api\"";
    let with = |to: &str| apply(&BASE.replace(route, to));
    let refused = |to: &str| invalid_field(with(to));
    let good = "  methods = [\"GET\", \"PURGE\"]\n  source = [\"10.0.0.0/8\", \"::1\"]\n  \
                query = { name = \"v\", value = \"2\" }\n  \
                request_headers = { set = { x-env = \"green\" }, remove = [\"x-debug\"] }\n  \
                response_headers = { add = { x-served-by = \"raftlb\" } }\n  \
                rate_limit = { requests_per_second = 5, burst = 10 }\n  pool = \"api\"";
    assert_eq!(with(good), Ok(1));
    let answers = "  path_prefix = \"/old/\"\n  redirect = { location = \"https://new.example\", status = 301, keep_path = true }";
    assert_eq!(with(answers), Ok(1));
    let cases = [
        ("  methods = [\"get\"]\n  pool = \"api\"", "methods", "get"),
        (
            "  source = [\"10.0.0.0/33\"]\n  pool = \"api\"",
            "source",
            "10.0.0.0/33",
        ),
        (
            "  query = { name = \"\", present = true }\n  pool = \"api\"",
            "query",
            "",
        ),
        (
            "  path_prefix = \"/\"\n  request_headers = { set = { content-length = \"1\" } }\n  pool = \"api\"",
            "request_headers",
            "content-length",
        ),
        (
            "  path_prefix = \"/\"\n  respond = { status = 99 }",
            "respond.status",
            "99",
        ),
        (
            "  path_prefix = \"/\"\n  redirect = { location = \"/x\", status = 200 }",
            "redirect.status",
            "200",
        ),
        (
            "  path_prefix = \"/\"\n  respond = { status = 404 }\n  pool = \"api\"",
            "pool",
            "api",
        ),
        (
            "  path_prefix = \"/\"\n  rate_limit = { requests_per_second = 0, burst = 1 }\n  pool = \"api\"",
            "rate_limit",
            "0 / 1",
        ),
    ];
    for (text, field, value) in cases {
        let (got_field, got_value) = refused(text);
        assert_eq!(
            (got_field.as_str(), got_value.as_str()),
            (format!("frontend[web].route[0].{field}").as_str(), value),
            "{text}"
        );
    }
}

#[test]
fn splits_and_header_routes_are_checked() {
    let with = |from: &str, to: &str| apply(&BASE.replace(from, to));
    let route = "  path_prefix = \"/api/\"\n  pool = \"api\"";
    // A route with both a pool and a split, with neither, and a split
    // whose weights sum to 0.
    let both =
        "  path_prefix = \"/api/\"\n  pool = \"api\"\n  split = [{ pool = \"web\", weight = 1 }]";
    assert_eq!(
        invalid_field(with(route, both)).0,
        "frontend[web].route[0].pool"
    );
    let neither = "  path_prefix = \"/api/\"";
    assert_eq!(
        invalid_field(with(route, neither)).0,
        "frontend[web].route[0].pool"
    );
    let zero = "  path_prefix = \"/api/\"\n  split = [{ pool = \"web\", weight = 0 }]";
    assert_eq!(
        invalid_field(with(route, zero)).0,
        "frontend[web].route[0].split"
    );
    // A header needs exactly one condition.
    let two = "  header = { name = \"X-A\", value = \"1\", present = true }\n  pool = \"api\"";
    assert_eq!(
        invalid_field(with(route, two)).0,
        "frontend[web].route[0].header"
    );
    let header_only = "  header = { name = \"X-A\", prefix = \"v\" }\n  pool = \"api\"";
    assert_eq!(with(route, header_only), Ok(1));
    // A frontend split must hold the frontend's own pool.
    let split = "pool = \"web\"\nsplit = [{ pool = \"api\", weight = 1 }]";
    let (field, value) = invalid_field(with(
        "pool = \"web\"\n  [[frontend.route]]",
        &format!("{split}\n  [[frontend.route]]"),
    ));
    assert_eq!(
        (field.as_str(), value.as_str()),
        ("frontend[web].pool", "web")
    );
}

#[test]
fn unparsable_address_names_the_backend() {
    let (field, value) = invalid_field(apply(&BASE.replace("127.0.0.1:9002", "localhost:80")));
    assert_eq!(field, "pool[web].backend[localhost:80].address");
    assert_eq!(value, "localhost:80");
}

#[test]
fn weight_out_of_range_is_refused() {
    let text = BASE.replace(
        "address = \"127.0.0.1:9002\"",
        "address = \"127.0.0.1:9002\"\n  weight = 300",
    );
    let (field, value) = invalid_field(apply(&text));
    assert_eq!(field, "pool[web].backend[127.0.0.1:9002].weight");
    assert_eq!(value, "300");
}

#[test]
fn maglev_without_hash_key_is_refused() {
    let (field, _) = invalid_field(apply(&BASE.replace("hash_key = \"header:X-User\"", "")));
    assert_eq!(field, "pool[api].hash_key");
}

#[test]
fn bad_hash_key_is_refused() {
    let (field, value) = invalid_field(apply(&BASE.replace("header:X-User", "url")));
    assert_eq!(
        (field.as_str(), value.as_str()),
        ("pool[api].hash_key", "url")
    );
}

#[test]
fn duplicate_names_are_refused() {
    let dup_pool = format!("{BASE}\n[[pool]]\nname = \"web\"\n");
    assert!(
        matches!(apply(&dup_pool), Err(StateError::AlreadyExists { what }) if what.contains("web"))
    );
    let dup_backend = BASE.replace("127.0.0.1:9002", "127.0.0.1:9001");
    assert!(
        matches!(apply(&dup_backend), Err(StateError::AlreadyExists { what }) if what.contains("9001"))
    );
}

#[test]
fn two_frontends_on_one_port_are_refused() {
    let text = format!(
        "{BASE}\n[[frontend]]\nname = \"b\"\nport = 8080\nprotocol = \"tcp\"\npool = \"web\"\n"
    );
    let (field, value) = invalid_field(apply(&text));
    assert_eq!(
        (field.as_str(), value.as_str()),
        ("frontend[b].port", "8080")
    );
}

#[test]
fn tcp_frontends_route_by_sni_only_and_http_ones_never_by_sni() {
    let tcp = BASE.replace("protocol = \"http\"", "protocol = \"tcp\"");
    // The path route of BASE on a tcp frontend: no SNI.
    let (field, _) = invalid_field(apply(&tcp));
    assert_eq!(field, "frontend[web].route[0].sni");
    let by_sni = tcp.replace("path_prefix = \"/api/\"", "sni = \"*.api.example\"");
    assert!(apply(&by_sni).is_ok());
    let both = tcp.replace(
        "path_prefix = \"/api/\"",
        "sni = \"api.example\"\n  host = \"x\"",
    );
    assert_eq!(invalid_field(apply(&both)).0, "frontend[web].route[0].host");
    let bad = tcp.replace("path_prefix = \"/api/\"", "sni = \"api example\"");
    assert_eq!(invalid_field(apply(&bad)).0, "frontend[web].route[0].sni");
    let http_sni = BASE.replace("path_prefix = \"/api/\"", "sni = \"api.example\"");
    assert_eq!(
        invalid_field(apply(&http_sni)).0,
        "frontend[web].route[0].sni"
    );
}

#[test]
fn incremental_commands_change_one_backend() {
    let mut state = ClusterState::default();
    state
        .dispatch(Command::ApplyConfig {
            spec: spec_from(BASE),
            if_version: None,
            note: None,
        })
        .expect("base");
    let add = Command::AddBackend {
        pool: "web".into(),
        backend: BackendSpec {
            address: "127.0.0.1:9003".into(),
            weight: 5,
            admin_state: AdminState::Active,
            discovered: None,
        },
    };
    assert_eq!(state.dispatch(add.clone()), Ok(2));
    assert!(matches!(
        state.dispatch(add),
        Err(StateError::AlreadyExists { .. })
    ));
    state
        .dispatch(Command::SetAdminState {
            pool: "web".into(),
            address: "127.0.0.1:9001".into(),
            state: AdminState::Draining,
        })
        .expect("drain");
    assert_eq!(
        state.spec.pools[0].backends[0].admin_state,
        AdminState::Draining
    );
    state
        .dispatch(Command::RemoveBackend {
            pool: "web".into(),
            address: "127.0.0.1:9002".into(),
        })
        .expect("remove");
    assert_eq!(state.spec.pools[0].backends.len(), 2);
    assert_eq!(state.version, 4);
}

#[test]
fn refused_commands_change_nothing() {
    let mut state = ClusterState::default();
    state
        .dispatch(Command::ApplyConfig {
            spec: spec_from(BASE),
            if_version: None,
            note: None,
        })
        .expect("base");
    let before = state.clone();
    let bad_weight = Command::SetWeight {
        pool: "web".into(),
        address: "127.0.0.1:9001".into(),
        weight: 0,
    };
    assert!(matches!(
        state.dispatch(bad_weight),
        Err(StateError::Invalid { .. })
    ));
    let unknown = Command::RemoveBackend {
        pool: "nope".into(),
        address: "127.0.0.1:9001".into(),
    };
    assert!(matches!(
        state.dispatch(unknown),
        Err(StateError::NotFound { .. })
    ));
    let stale = Command::ApplyConfig {
        spec: ClusterSpec::default(),
        if_version: Some(7),
        note: None,
    };
    assert_eq!(
        state.dispatch(stale),
        Err(StateError::VersionConflict {
            expected: 7,
            current: 1
        })
    );
    assert_eq!(state, before);
}
