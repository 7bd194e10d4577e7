//! The parts of a resolv.conf(5) that bpfk reads: `nameserver`, `search` (and the older
//! `domain`) and `options`. The node agent forwards names outside the cluster to the node's
//! nameservers; the kubelet gives pods with `dnsPolicy: Default` the node's file.

use std::net::IpAddr;

/// A parsed resolv.conf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses the text of a resolv.conf. Unknown keywords and nameservers that are no IP
    /// address (a scoped `fe80::1%eth0` too) are skipped, as the C resolver does; the last
    /// `search` or `domain` line wins.
    pub fn parse(text: &str) -> Self {
        let mut conf = Self::default();
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(ip) = words.next().and_then(|w| w.parse().ok()) {
                        conf.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    conf.searches = words.map(str::to_string).collect();
                }
                Some("options") => conf.options.extend(words.map(str::to_string)),
                _ => {}
            }
        }
        conf
    }

    /// Reads and parses `path`.
    pub fn read(path: &std::path::Path) -> std::io::Result<Self> {
        Ok(Self::parse(&std::fs::read_to_string(path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_servers_searches_and_options() {
        let conf = ResolvConf::parse(
            "# generated\nnameserver 10.0.0.2\nnameserver bogus\nnameserver fd00::53 # v6\n\
             domain old.example\nsearch corp.example lab.example\noptions ndots:2 edns0\n\
             options timeout:1\nsortlist 10.0.0.0\n",
        );
        assert_eq!(
            conf.nameservers,
            [
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::53".parse().unwrap()
            ]
        );
        assert_eq!(conf.searches, ["corp.example", "lab.example"]);
        assert_eq!(conf.options, ["ndots:2", "edns0", "timeout:1"]);
        assert_eq!(ResolvConf::parse(""), ResolvConf::default());
    }
}
