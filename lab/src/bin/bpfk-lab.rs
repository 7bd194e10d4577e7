//! `bpfk-lab`: runs the multi-node lab cluster of [`bpfk_lab::cluster`] for `cargo xtask demo`
//! (the same code the cluster end-to-end test uses).
//!
//! Once every node is Ready it prints one line `BPFK-LAB-READY <json>` (kubeconfig, API
//! address, nodes with their netns, cgroup, pins, log paths, the lab registry's host:port)
//! on stdout, then runs until its
//! stdin reaches EOF (the caller closes it, or dies), tears everything down and prints
//! `BPFK-LAB-DOWN`. SIGINT is ignored so a terminal Ctrl-C reaches the caller, which then
//! closes stdin: the lab always gets to clean up.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use bpfk_lab::cluster::{Binaries, Lab, LabOptions};
use serde_json::json;

const USAGE: &str = "usage: bpfk-lab --server BIN --agent BIN [--nodes N] [--id ID] \
                     [--node-prefix PREFIX] [--log-level RUST_LOG]";

const HELP: &str = "\
bpfk-lab: a local multi-node bpfk cluster in network namespaces (etcd, bpfk-server, and per
node a containerd and bpfk-agent --kubelet). Prints `BPFK-LAB-READY <json>` once every node
is Ready, runs until its stdin reaches EOF, tears everything down and prints `BPFK-LAB-DOWN`.
Needs root.

usage: bpfk-lab --server BIN --agent BIN [--nodes N] [--id ID] [--node-prefix PREFIX]
                [--log-level RUST_LOG]

  --server BIN           the bpfk-server binary
  --agent BIN            the bpfk-agent binary
  --nodes N              number of nodes, 1 to 9 (default 2)
  --id ID                names the lab's namespaces and lock (default lab)
  --node-prefix PREFIX   node names are PREFIXnode-1, ... (default: ID-, so two labs never
                         share node names, pins or cgroups; \"\" gives node-1, ...)
  --log-level RUST_LOG   log filter of the server and the agents (default info)
  -h, --help             this text
";

/// What the command line asks for.
#[derive(Debug)]
enum Request {
    Help,
    Run(LabOptions),
}

fn parse(args: impl Iterator<Item = String>) -> Result<Request> {
    let mut o = LabOptions {
        id: "lab".into(),
        nodes: 2,
        node_prefix: None,
        binaries: Binaries {
            server: PathBuf::new(),
            agent: PathBuf::new(),
        },
        log_level: "info".into(),
        server_args: Vec::new(),
    };
    let mut args = args.peekable();
    while let Some(flag) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Request::Help),
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
            "--node-prefix" => o.node_prefix = Some(value()?),
            "--log-level" => o.log_level = value()?,
            other => bail!("unknown argument {other:?}; {USAGE}"),
        }
    }
    if o.binaries.server.as_os_str().is_empty() || o.binaries.agent.as_os_str().is_empty() {
        bail!("--server and --agent are required; {USAGE}");
    }
    Ok(Request::Run(o))
}

fn main() -> std::process::ExitCode {
    // The lab reports what stops it (a missing tool, a busy id) by panicking, and unwinding
    // tears down what was built: print the message as one line, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("the lab failed");
        eprintln!("bpfk-lab: error: {message}");
    }));
    let result = match parse(std::env::args().skip(1)) {
        Ok(Request::Help) => {
            print!("{HELP}");
            Ok(())
        }
        Ok(Request::Run(options)) => run(options),
        Err(err) => Err(err),
    };
    bpfk_common::exit::report("bpfk-lab", result)
}

fn run(options: LabOptions) -> Result<()> {
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
        "registry": lab.registry(),
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

    fn options(s: &str) -> LabOptions {
        match parse(args(s)).unwrap() {
            Request::Run(o) => o,
            Request::Help => panic!("{s}: help, not a run"),
        }
    }

    #[test]
    fn flags() {
        let o = options("--server /s --agent /a --nodes 3 --id demo");
        assert_eq!(o.nodes, 3);
        assert_eq!(o.id, "demo");
        assert_eq!(o.binaries.agent, PathBuf::from("/a"));
        assert_eq!(o.node_prefix, None);
        assert_eq!(o.node_name(2), "demo-node-2");
        let o = options("--server /s --agent /a --node-prefix x-");
        assert_eq!(o.node_name(1), "x-node-1");
    }

    #[test]
    fn help_wherever_it_is_asked_for() {
        for a in [
            "--help",
            "-h",
            "--server /s --help",
            "--server /s --agent /a -h",
        ] {
            assert!(matches!(parse(args(a)), Ok(Request::Help)), "{a}");
        }
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
