//! Rank tables: both forms, the shipped tables, worker environments, and rejections.
use segzoo_launch::plan::{find_server, generation_table, rank0_server, workers};
use segzoo_launch::rank_table::{generate, parse_device_list, RankTable};
use std::path::Path;

fn shipped(name: &str) -> RankTable {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rank_tables").join(name);
    RankTable::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn env_of(w: &segzoo_launch::plan::Worker, key: &str) -> String {
    w.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("{key} not set"))
}

/// Where the worker is told rank 0 hosts the rendezvous.
fn master(w: &segzoo_launch::plan::Worker) -> String {
    format!("{}:{}", env_of(w, "MASTER_ADDR"), env_of(w, "MASTER_PORT"))
}

#[test]
fn shipped_tables_give_the_right_environments() {
    let t = shipped("hccl_1p.json");
    assert_eq!(t.world_size(), 1);
    let ws = workers(&t, 0, Path::new("t.json"), 29500).expect("planned");
    assert_eq!(ws.len(), 1);
    assert_eq!(env_of(&ws[0], "RANK_SIZE"), "1");
    assert_eq!(master(&ws[0]), "127.0.0.1:29500");

    let t = shipped("hccl_2p.json");
    let ws = workers(&t, 0, Path::new("t.json"), 29500).expect("planned");
    assert_eq!(ws.iter().map(|w| env_of(w, "RANK")).collect::<Vec<_>>(), ["0", "1"]);
    assert!(ws.iter().all(|w| env_of(w, "LOCAL_WORLD_SIZE") == "2" && master(w) == "127.0.0.1:29500"));

    let t = shipped("hccl_8p.json");
    let ws = workers(&t, 0, Path::new("/x/hccl_8p.json"), 29600).expect("planned");
    assert_eq!(ws.len(), 8);
    for (k, w) in ws.iter().enumerate() {
        assert_eq!(env_of(w, "RANK_ID"), k.to_string());
        assert_eq!(env_of(w, "DEVICE_ID"), k.to_string());
        assert_eq!(env_of(w, "LOCAL_RANK"), k.to_string());
        assert_eq!(env_of(w, "LOCAL_SIZE"), "8");
        assert_eq!(env_of(w, "RANK_SIZE"), "8");
        assert_eq!(env_of(w, "RANK_TABLE_FILE"), "/x/hccl_8p.json");
        // torchrun's names for the same place, so either convention reads it.
        assert_eq!((env_of(w, "RANK"), env_of(w, "WORLD_SIZE")), (k.to_string(), "8".to_string()));
        assert_eq!(env_of(w, "LOCAL_WORLD_SIZE"), "8");
        assert_eq!(master(w), "127.0.0.1:29600");
    }

    let t = shipped("hccl_16p_2servers.json");
    assert_eq!(t.world_size(), 16);
    let second = find_server(&t, Some("10.0.0.2"), &[]).expect("listed");
    let ws = workers(&t, second, Path::new("t.json"), 29500).expect("planned");
    assert_eq!(ws.iter().map(|w| w.rank).collect::<Vec<_>>(), (8..16).collect::<Vec<_>>());
    assert_eq!(env_of(&ws[3], "LOCAL_RANK"), "3");
    assert_eq!(env_of(&ws[3], "DEVICE_ID"), "3");
    assert_eq!(env_of(&ws[3], "SERVER_ID"), "10.0.0.2");
    // Every rank meets at the rendezvous on the server holding rank 0.
    assert_eq!(master(&ws[3]), "10.0.0.1:29500");
}

#[test]
fn master_addr_names_the_server_holding_rank_0_wherever_it_is_listed() {
    let text = v1(
        r#"{"server_id": "10.0.0.1", "device": [{"device_id": "0", "rank_id": "1"}]},
           {"server_id": "10.0.0.2", "device": [{"device_id": "0", "rank_id": "0"}]}"#,
        "2",
        "completed",
    );
    let t = RankTable::parse(&text, "t.json").expect("valid");
    assert_eq!(rank0_server(&t).ok(), Some(1));
    for index in 0..2 {
        let ws = workers(&t, index, Path::new("t.json"), 29500).expect("planned");
        assert_eq!(master(&ws[0]), "10.0.0.2:29500", "server {index}");
    }
}

#[test]
fn server_found_by_identity_or_rejected() {
    let t = shipped("hccl_16p_2servers.json");
    assert_eq!(find_server(&t, None, &["10.0.0.2".into()]).ok(), Some(1));
    let e = find_server(&t, None, &["10.9.9.9".into(), "myhost".into()]).expect_err("not listed");
    assert!(e.to_string().contains("this host (10.9.9.9, myhost) is not in the rank table"), "{e}");
    assert_eq!(e.exit_code(), 2, "bad input");
    let e = find_server(&t, Some("10.0.0.3"), &[]).expect_err("not listed");
    assert!(e.to_string().contains("--server-id 10.0.0.3 is not in the rank table"), "{e}");
    assert_eq!(e.exit_code(), 2, "bad input");
}

#[test]
fn legacy_form_with_integers() {
    let text = r#"{
      "status": "completed", "group_count": 1,
      "group_list": [{ "group_name": "", "instance_count": 2, "instance_list": [
        { "rank_id": 1, "server_id": "10.0.0.1", "devices": [{ "device_id": 5, "device_ip": "192.1.1.5" }] },
        { "rank_id": "0", "server_id": "10.0.0.1", "devices": [{ "device_id": "4", "device_ip": "192.1.1.4" }] }
      ]}]
    }"#;
    let t = RankTable::parse(text, "old.json").expect("valid");
    assert_eq!(t.world_size(), 2);
    let ws = workers(&t, 0, Path::new("old.json"), 1).expect("planned");
    assert_eq!((ws[0].rank, ws[0].device_id, ws[0].local_rank), (0, 4, 0));
    assert_eq!((ws[1].rank, ws[1].device_id, ws[1].local_rank), (1, 5, 1));
}

fn v1(servers: &str, count: &str, status: &str) -> String {
    format!(r#"{{"version": "1.0", "server_count": {count}, "status": "{status}", "server_list": [{servers}]}}"#)
}

const S0: &str =
    r#"{"server_id": "10.0.0.1", "device": [{"device_id": "0", "rank_id": "0"}, {"device_id": "1", "rank_id": "1"}]}"#;

#[test]
fn malformed_tables_are_rejected_with_the_fault_named() {
    let cases: Vec<(String, &str)> = vec![
        ("{\"version\": \"1.0\",\n  \"server_count\": 1,,}".into(), "t.json:2:"),
        ("[]".into(), "`(top level)`: expected an object"),
        ("{}".into(), "missing field `status`"),
        (v1(S0, "\"1\"", "initializing"), "field `status`: is \"initializing\""),
        (v1(S0, "\"2\"", "completed"), "field `server_count`: says 2 but server_list has 1"),
        (v1(S0, "\"one\"", "completed"), "field `server_count`: expected a non-negative integer"),
        (
            v1(r#"{"device": [{"device_id": "0", "rank_id": "0"}]}"#, "1", "completed"),
            "missing field `server_list[0].server_id`",
        ),
        (
            v1(r#"{"server_id": "a", "device": [{"device_id": "0"}]}"#, "1", "completed"),
            "missing field `server_list[0].device[0].rank_id`",
        ),
        (
            v1(r#"{"server_id": "a", "device": [{"device_id": "0", "rank_id": "0"}, {"device_id": "1", "rank_id": "0"}]}"#, "1", "completed"),
            "rank 0 is given twice",
        ),
        (
            v1(r#"{"server_id": "a", "device": [{"device_id": "0", "rank_id": "0"}, {"device_id": "1", "rank_id": "2"}]}"#, "1", "completed"),
            "rank ids must be exactly 0..1; found 2 on server a, missing 1",
        ),
        (
            v1(r#"{"server_id": "a", "device": [{"device_id": "3", "rank_id": "0"}, {"device_id": "3", "rank_id": "1"}]}"#, "1", "completed"),
            "device 3 appears twice on server a",
        ),
        (
            v1(r#"{"server_id": "a", "device": [{"device_id": "-1", "rank_id": "0"}]}"#, "1", "completed"),
            "field `server_list[0].device[0].device_id`: expected a non-negative integer",
        ),
        (
            v1(&format!("{S0}, {}", S0.replace("\"0\"}", "\"2\"}").replace("\"1\"}", "\"3\"}")), "2", "completed"),
            "server 10.0.0.1 is listed twice",
        ),
        (r#"{"version": "2.0", "status": "completed"}"#.into(), "unsupported version \"2.0\""),
        (v1(r#"{"server_id": "a", "device": []}"#, "1", "completed"), "server a has no devices"),
        (r#"{"status": "completed", "group_list": []}"#.into(), "lists no ranks"),
        (r#"{"status": "completed", "group_list": [{"instance_list": [{"rank_id": 0, "server_id": "a", "devices": []}]}]}"#.into(), "expected exactly one device per rank"),
    ];
    assert!(cases.len() >= 10);
    let dir = tempfile::tempdir().expect("tempdir");
    for (text, needle) in cases {
        let e = RankTable::parse(&text, "t.json").expect_err(&text).to_string();
        assert!(e.starts_with("t.json"), "{e}");
        assert!(e.contains(needle), "expected {needle:?} in {e:?} for {text}");
        // The launcher refuses it before starting anything, with exit code 2.
        let file = dir.path().join("t.json");
        std::fs::write(&file, &text).expect("write");
        let marker = dir.path().join("started");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_segzoo-launch"))
            .args(["--rank-table", "t.json", "--server-id", "a", "--", "touch"])
            .arg(&marker)
            .current_dir(dir.path())
            .output()
            .expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle) && err.contains("t.json"), "expected {needle:?} in {err:?}");
        assert!(!marker.exists(), "no worker may start for a bad table");
    }
}

#[test]
fn generated_tables_parse_back() {
    let devices = parse_device_list("0-3,6").expect("valid");
    assert_eq!(devices, vec![0, 1, 2, 3, 6]);
    let json = generate("10.1.1.1", &devices, Some("192.168.100.101".parse().expect("ip")));
    let t = RankTable::parse(&json.to_string(), "gen").expect("valid");
    assert_eq!(t.world_size(), 5);
    assert_eq!(t.servers[0].devices[4].device_id, 6);
    assert_eq!(t.servers[0].devices[4].rank_id, 4);
    assert_eq!(t.servers[0].devices[4].device_ip.as_deref(), Some("192.168.100.107"));
    for bad in ["", "3-1", "0,0", "a"] {
        assert!(parse_device_list(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn check_and_gen_table_exit_2_on_bad_input_and_1_when_the_output_cannot_be_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_segzoo-launch"))
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("runs")
    };
    std::fs::write(dir.path().join("bad.json"), "{ nope").expect("write");
    let out = run(&["check", "--rank-table", "bad.json", "--server-id", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.json:1:3: malformed JSON"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["gen-table", "--server-id", "127.0.0.1", "--devices", "3-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--devices: range \"3-1\" runs backwards"));
    let out = run(&["gen-table", "--server-id", "127.0.0.1", "--devices", "0-1", "-o", "t.json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(RankTable::load(&dir.path().join("t.json")).expect("valid").world_size(), 2);
    let out = run(&["gen-table", "--server-id", "127.0.0.1", "-o", "no/such/dir/t.json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/dir/t.json: "));
}

#[test]
fn a_generation_of_fewer_servers_renumbers_the_ranks_in_order_and_rank_0_moves_with_them() {
    let t = shipped("hccl_16p_2servers.json");
    assert_eq!(generation_table(&t, &[0, 1]), t, "every server: the table itself");
    // Server 1 (ranks 0-7) lost: server 2's ranks 8-15 become 0-7, and it hosts rank 0.
    let g = generation_table(&t, &[1]);
    assert_eq!(g.world_size(), 8);
    let ws = workers(&g, 0, Path::new("gen.json"), 29500).expect("planned");
    assert_eq!(ws.iter().map(|w| w.rank).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    assert_eq!(master(&ws[0]), "10.0.0.2:29500");
    assert_eq!(env_of(&ws[3], "DEVICE_ID"), "3", "devices keep their ids");
    assert_eq!(env_of(&ws[3], "RANK_TABLE_FILE"), "gen.json");
    // Its table reads back as a valid table.
    let text = serde_json::to_string(&g.to_json()).expect("json");
    assert_eq!(segzoo_launch::rank_table::RankTable::parse(&text, "gen.json").expect("valid"), g);
}
