//! The static token file (`--token-auth-file`), as kube-apiserver reads it: CSV lines
//! `token,user,uid[,"group1,group2"]`.

use std::collections::HashMap;

use crate::user::{self, UserInfo};

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("line {line}: {reason}")]
    Line { line: usize, reason: String },
}

/// Tokens and the users they stand for.
#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    users: HashMap<String, UserInfo>,
}

impl TokenFile {
    /// Parse the file's text. Blank lines and `#` comments are skipped; a token that appears
    /// twice is an error (which user would it be?).
    pub fn parse(text: &str) -> Result<TokenFile, TokenFileError> {
        let mut users = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: &str| TokenFileError::Line {
                line: i + 1,
                reason: reason.to_string(),
            };
            let fields = split_csv(line);
            if fields.len() < 3 {
                return Err(err("want at least token,user,uid"));
            }
            let (token, name, uid) = (&fields[0], &fields[1], &fields[2]);
            if token.is_empty() || name.is_empty() {
                return Err(err("the token and the user must not be empty"));
            }
            let groups = fields
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(str::trim)
                        .filter(|g| !g.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            let info = user::authenticated(name.clone(), uid.clone(), groups);
            if users.insert(token.clone(), info).is_some() {
                return Err(err("a token appears twice"));
            }
        }
        Ok(TokenFile { users })
    }

    /// The user `token` stands for.
    pub fn user(&self, token: &str) -> Option<&UserInfo> {
        self.users.get(token)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// One CSV line's fields (double quotes group commas; `""` is a quote).
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field).trim().to_string()),
            c => field.push(c),
        }
    }
    fields.push(field.trim().to_string());
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_with_and_without_groups() {
        let file = TokenFile::parse("# comment\nt1,alice,1\n\nt2,bob,2,\"dev,ops\"\n").unwrap();
        assert_eq!(file.len(), 2);
        let bob = file.user("t2").unwrap();
        assert_eq!(bob.name, "bob");
        assert_eq!(bob.uid, "2");
        assert_eq!(bob.groups, ["dev", "ops", "system:authenticated"]);
        assert!(file.user("t3").is_none());
    }

    #[test]
    fn bad_lines_name_the_line() {
        let e = TokenFile::parse("t1,alice,1\nonly-token\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: want at least token,user,uid");
        let e = TokenFile::parse("t1,alice,1\nt1,bob,2\n").unwrap_err();
        assert_eq!(e.to_string(), "line 2: a token appears twice");
        assert!(TokenFile::parse(",alice,1").is_err());
    }
}
