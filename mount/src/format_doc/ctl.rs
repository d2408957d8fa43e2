//! Ties the `## holt-fs control socket` section of doc/FORMAT.md to the
//! protocol: each field table to the keys, JSON types and optionality of
//! what the code serializes, each enum-valued field to every value it can
//! take, and the lists of error codes and requests to their constants.

use serde::Serialize;
use serde_json::{json, Value};

use super::{lines_under_headings_of, section_at};
use crate::ctl::proto::{self, code, Reply, ReplyError, Request, Status, PROTOCOL_VERSION};
use crate::dump::{DumpOptions, DumpReport};
use crate::info::{
    AnsweredBy, Counts, DiskUsage, EngineInfo, LastShutdown, MountInfo, MountState, SocketState, StoreInfo,
};
use crate::metrics::{Op, Requests, StatsReport};

const SECTION_HEADING: &str = "\n## holt-fs control socket\n";

/// A documented field: name, type cell, meaning cell.
type FieldRow = (String, String, String);

fn section() -> &'static str {
    section_at(SECTION_HEADING)
}

/// Rows of the table under `### heading` whose first cell is backticked.
fn rows(heading: &str) -> Vec<FieldRow> {
    let rows: Vec<FieldRow> = lines_under_headings_of(section())
        .filter(|&(h, line)| h == heading && line.starts_with("| `"))
        .map(|(_, line)| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let cell = |i: usize| cells.get(i).copied().unwrap_or("").to_string();
            (cell(0).trim_matches('`').to_string(), cell(1), cell(2))
        })
        .collect();
    assert!(!rows.is_empty(), "doc/FORMAT.md has a table under ### {heading}");
    rows
}

fn to_json<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("protocol values serialize")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The table under `heading` names `full`'s keys, with each
/// key's JSON type; a key that `sparse` leaves null or absent is
/// documented as such.
fn assert_table(heading: &str, full: &Value, sparse: &Value) {
    let documented = rows(heading);
    let object = full.as_object().expect("a sample serializes as an object");
    // `Value` maps sort their keys, so the order of the fields is not compared.
    let mut names: Vec<&str> = documented.iter().map(|r| r.0.as_str()).collect();
    names.sort_unstable();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(names, keys, "### {heading}: documented fields");
    for (name, ty, _) in &documented {
        if !ty.starts_with("any JSON value") {
            assert!(ty.starts_with(json_type(&object[name])), "### {heading}: {name} is documented as {ty}");
        }
        match sparse.get(name) {
            None => assert!(ty.ends_with("or absent"), "### {heading}: {name} may be absent: {ty}"),
            Some(Value::Null) => assert!(ty.ends_with("or null"), "### {heading}: {name} may be null: {ty}"),
            Some(_) => assert!(!ty.contains(" or "), "### {heading}: {name} is always there: {ty}"),
        }
    }
}

/// The meaning of `field` under `heading` names each of `values` in backticks.
fn assert_values<T: Serialize>(heading: &str, field: &str, values: &[T]) {
    let row = rows(heading).into_iter().find(|r| r.0 == field).expect("documented field");
    for v in values {
        let shown = match to_json(v) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        assert!(row.2.contains(&format!("`{shown}`")), "### {heading}: {field} names the value `{shown}`");
    }
}

fn store_info(some: bool) -> StoreInfo {
    let mount = MountInfo {
        mountpoint: "/mnt".into(),
        pid: some.then_some(42),
        read_only: false,
        state: MountState::Serving,
    };
    StoreInfo {
        store: "/srv/store".into(),
        answered_by: AnsweredBy::Daemon,
        format: some.then_some(2),
        uuid: some.then(|| "00112233-4455-6677-8899-aabbccddeeff".into()),
        created_sec: some.then_some(1_700_000_000),
        mounts: vec![mount],
        last_shutdown: LastShutdown::Clean,
        control_socket: SocketState::Answering,
        counts: Counts::default(),
        disk: DiskUsage::default(),
        engine: EngineInfo {
            fill_factor: 0.5,
            cache_hit_rate: some.then_some(0.25),
            wal_bytes: some.then_some(4096),
            last_checkpoint_sec: some.then_some(1_700_000_001),
            ..EngineInfo::default()
        },
    }
}

#[test]
fn message_tables_match_the_serialized_messages() {
    let with_args = Request { args: Some(json!({})), ..Request::new(proto::REQUEST_DUMP) };
    assert_table("Request", &to_json(&with_args), &to_json(&Request::new(proto::REQUEST_INFO)));
    let full = Reply {
        error: Some(ReplyError { code: code::FAILED.into(), message: "m".into() }),
        ..Reply::ok(json!({}))
    };
    let bare = Reply { body: None, error: None, ..Reply::ok(Value::Null) };
    assert_table("Reply", &to_json(&full), &to_json(&bare));
    let error = to_json(full.error.as_ref().expect("set above"));
    assert_table("Reply error", &error, &error);
    assert_values("Reply", "status", &[Status::Ok, Status::More, Status::Error]);
    for heading in ["Request", "Reply"] {
        assert_values(heading, "v", &[PROTOCOL_VERSION]);
    }
    assert!(section().contains(&format!("at\nmost {} bytes", proto::LINE_BYTES_MAX)), "the line limit is documented");
}

#[test]
fn error_codes_and_requests_are_listed_exactly() {
    let listed = |heading: &str| rows(heading).into_iter().map(|r| r.0).collect::<Vec<_>>();
    assert_eq!(listed("Error codes"), code::ALL.to_vec());
    assert_eq!(listed("Requests"), proto::REQUESTS.to_vec());
}

#[test]
fn info_report_tables_match_the_serialized_report() {
    let (full, sparse) = (to_json(&store_info(true)), to_json(&store_info(false)));
    assert_table("Info report", &full, &sparse);
    for (heading, part) in [("counts", "counts"), ("disk", "disk"), ("engine", "engine")] {
        assert_table(&format!("Info report: {heading}"), &full[part], &sparse[part]);
    }
    assert_table("Info report: mounts", &full["mounts"][0], &sparse["mounts"][0]);
    assert_values("Info report", "answered_by", &[AnsweredBy::Daemon, AnsweredBy::Store]);
    let shutdowns = [LastShutdown::None, LastShutdown::Clean, LastShutdown::Killed, LastShutdown::PowerLoss];
    assert_values("Info report", "last_shutdown", &shutdowns);
    let sockets = [SocketState::Answering, SocketState::Stale, SocketState::Absent];
    assert_values("Info report", "control_socket", &sockets);
    assert_values("Info report: mounts", "state", &[MountState::Serving, MountState::Dead]);
}

fn stats_report() -> StatsReport {
    let requests = Requests::default();
    requests.record(Op::Lookup, 2000, libc::ENOENT);
    let daemon = crate::metrics::report::Daemon { pid: 1, started_sec: 2, uptime_sec: 0.5, passthrough: false, txn_conflicts: 0 };
    StatsReport::new(daemon, &requests.totals(), holt_core::TreeCounters::default())
}

#[test]
fn stats_report_tables_match_the_serialized_report() {
    let report = to_json(&stats_report());
    assert_table("Stats report", &report, &report);
    let lookup = &report["requests"][0];
    assert_eq!(lookup["op"], "lookup");
    assert_table("Stats report: requests", lookup, lookup);
    assert_table("Stats report: engine", &report["engine"], &report["engine"]);
    let doc = rows("Stats report: requests").into_iter().find(|r| r.0 == "errors").expect("errors documented");
    assert!(doc.2.contains(&format!("`{}`", lookup["errors"].as_object().unwrap().keys().next().unwrap())));
}

#[test]
fn dump_tables_match_the_serialized_arguments_announcement_and_report() {
    let args = to_json(&DumpOptions { meta_only: true, no_ctime: true });
    assert_table("Dump arguments", &args, &args);
    let none: DumpOptions = serde_json::from_value(json!({})).expect("every argument has a default");
    assert_eq!(none, DumpOptions::default());
    let announced = json!({ "stream": crate::dump::STREAM_NAME, "version": crate::dump::format::VERSION });
    assert_table("Dump announcement", &announced, &announced);
    assert_values("Dump announcement", "stream", &[crate::dump::STREAM_NAME]);
    let report = to_json(&DumpReport { changed_paths: vec!["/a".into()], ..DumpReport::default() });
    assert_table("Dump report", &report, &report);
}

#[test]
fn store_layout_documents_the_socket_the_server_makes() {
    struct Silent;
    impl crate::ctl::Handler for Silent {
        fn handle(&self, _: &Request, _: &mut crate::ctl::Responder) -> std::io::Result<()> {
            Ok(())
        }
    }
    let tmp = tempfile::tempdir().expect("temporary directory");
    let _server = crate::ctl::Server::start(tmp.path(), std::sync::Arc::new(Silent)).expect("server starts");
    let name = crate::ctl::SOCKET_NAME;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(tmp.path().join(name)).expect("socket").permissions());
    assert_eq!(mode & 0o777, 0o600);
    let store_section = super::section();
    assert!(store_section.contains(&format!("  {name}  ")) && store_section.contains("(mode 0600)"), "layout names {name}");
    assert!(section().contains(&format!("`STORE/{name}`")));
}
