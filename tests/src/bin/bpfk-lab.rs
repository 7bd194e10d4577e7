//! `bpfk-lab`: runs the multi-node lab cluster of [`bpfk_tests::lab`] for `cargo xtask demo`
//! (the same code the cluster end-to-end test uses).
//!
//! Once every node is Ready it prints one line `BPFK-LAB-READY <json>` (kubeconfig, API
//! address, nodes with their netns, cgroup, pins, log paths) on stdout, then runs until its
//! stdin reaches EOF (the caller closes it, or dies), tears everything down and prints
//! `BPFK-LAB-DOWN`. SIGINT is ignored so a terminal Ctrl-C reaches the caller, which then
//! closes stdin: the lab always gets to clean up.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bpfk_tests::lab::{Binaries, Lab, LabOptions};
use serde_json::json;

const USAGE: &str = "usage: bpfk-lab --server BIN --agent BIN [--nodes N] [--id ID] \
                     [--node-prefix PREFIX] [--log-level RUST_LOG]";

fn parse(args: impl Iterator<Item = String>) -> Result<LabOptions> {
    let mut o = LabOptions {
        id: "lab".into(),
        nodes: 2,
        node_prefix: String::new(),
        binaries: Binaries {
            server: PathBuf::new(),
            agent: PathBuf::new(),
        },
        log_level: "info".into(),
    };
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--server" => o.binaries.server = value()?.into(),
            "--agent" => o.binaries.agent = value()?.into(),
            "--nodes" => {
                let v = value()?;
                o.nodes = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=9).contains(n))
                    .with_context(|| format!("--nodes {v:?}: a number from 1 to 9"))?;
            }
            "--id" => o.id = value()?,
            "--node-prefix" => o.node_prefix = value()?,
            "--log-level" => o.log_level = value()?,
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    if o.binaries.server.as_os_str().is_empty() || o.binaries.agent.as_os_str().is_empty() {
        bail!("--server and --agent are required; {USAGE}");
    }
    Ok(o)
}

fn main() -> Result<()> {
    let options = parse(std::env::args().skip(1))?;
    // SAFETY: setting a signal disposition to SIG_IGN.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
    }
    let lab = Lab::start(options);
    let nodes: Vec<_> = lab
        .nodes()
        .iter()
        .map(|n| {
            json!({
                "name": n.name(),
                "ip": n.ip().to_string(),
                "netns": n.netns(),
                "cgroup": n.cgroup(),
                "pin_dir": n.pin_dir(),
                "pod_log_dir": n.pod_log_dir(),
                "kubelet": n.kubelet_addr().to_string(),
                "agent_log": n.agent_log_path(),
            })
        })
        .collect();
    let info = json!({
        "kubeconfig": lab.kubeconfig(),
        "api": lab.api_url(),
        "dir": lab.dir(),
        "server_log": lab.dir().join("bpfk-server.log"),
        "nodes": nodes,
    });
    let mut out = std::io::stdout();
    writeln!(out, "BPFK-LAB-READY {info}")?;
    out.flush()?;
    // Until the caller closes our stdin (or dies).
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(lab);
    writeln!(out, "BPFK-LAB-DOWN")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> impl Iterator<Item = String> + '_ {
        s.split_whitespace().map(str::to_string)
    }

    #[test]
    fn flags() {
        let o = parse(args("--server /s --agent /a --nodes 3 --id demo")).unwrap();
        assert_eq!(o.nodes, 3);
        assert_eq!(o.id, "demo");
        assert_eq!(o.binaries.agent, PathBuf::from("/a"));
        assert_eq!(o.node_prefix, "");
    }

    #[test]
    fn bad_flags_are_named() {
        let e = parse(args("--server /s --agent /a --nodes 12"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--nodes"), "{e}");
        let e = parse(args("--server /s")).unwrap_err().to_string();
        assert!(e.contains("--agent"), "{e}");
        let e = parse(args("--server /s --agent /a --bogus"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--bogus"), "{e}");
    }
}
