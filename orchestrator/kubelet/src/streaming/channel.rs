//! The Kubernetes remote-command channel protocol over WebSocket (`v4.channel.k8s.io` and
//! `v5.channel.k8s.io`): binary messages whose first byte names the channel, and the final
//! `Status` on the error channel that carries the exit code.

use serde_json::{json, Value};

/// The subprotocols served, preferred first.
pub const PROTOCOLS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const ERROR: u8 = 3;

/// One message on `channel`.
pub fn frame(channel: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1);
    out.push(channel);
    out.extend_from_slice(data);
    out
}

/// The Status that ends a command: Success, or Failure with the exit code as kubectl
/// reads it (`reason: NonZeroExitCode`, cause `ExitCode`).
pub fn exit_status(command: &[String], exit_code: i32) -> Value {
    if exit_code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command {command:?}, exit code {exit_code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": exit_code.to_string()}]}
    })
}

/// A Status for a command that could not run.
pub fn failure(message: &str) -> Value {
    json!({"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError", "code": 500})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_statuses() {
        assert_eq!(frame(STDOUT, b"hi"), vec![1, b'h', b'i']);
        let cmd = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        assert_eq!(exit_status(&cmd, 0)["status"], "Success");
        let failed = exit_status(&cmd, 3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
        assert!(failed["message"].as_str().unwrap().ends_with("exit code 3"));
    }
}
