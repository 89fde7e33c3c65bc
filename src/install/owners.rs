//! User and group lookup for secret ownership: numeric ids as given, names from `/etc/passwd`
//! and `/etc/group` read once per run (users created by NixOS's `users` activation step are
//! only visible to the chown phase, which reads the files again).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Name → id tables for users and groups.
#[derive(Debug, Default, Clone)]
pub struct Owners {
    users: HashMap<String, u32>,
    groups: HashMap<String, u32>,
}

impl Owners {
    /// Reads `/etc/passwd` and `/etc/group`; a missing file just means no names resolve.
    pub fn load() -> Result<Owners> {
        Owners::load_from(Path::new("/etc/passwd"), Path::new("/etc/group"))
    }

    pub fn load_from(passwd: &Path, group: &Path) -> Result<Owners> {
        Ok(Owners {
            users: read_table(passwd)?,
            groups: read_table(group)?,
        })
    }

    pub fn uid(&self, user: &str) -> Result<u32> {
        lookup(user, &self.users, "user")
    }

    pub fn gid(&self, group: &str) -> Result<u32> {
        lookup(group, &self.groups, "group")
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.gid(group).is_ok()
    }

    /// Both ids, or an error naming what is unknown.
    pub fn resolve(&self, owner: &str, group: &str) -> Result<(u32, u32)> {
        Ok((self.uid(owner)?, self.gid(group)?))
    }
}

fn lookup(name: &str, table: &HashMap<String, u32>, what: &str) -> Result<u32> {
    if let Ok(id) = name.parse::<u32>() {
        return Ok(id);
    }
    match table.get(name) {
        Some(id) => Ok(*id),
        None => bail!("unknown {what} `{name}`"),
    }
}

/// `name:x:id:...` lines; malformed lines are skipped like libc does.
fn read_table(path: &Path) -> Result<HashMap<String, u32>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(parse_table(&text))
}

fn parse_table(text: &str) -> HashMap<String, u32> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id = fields.nth(1)?.parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_string(), id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_from_the_tables_and_numbers_pass_through() {
        let owners = Owners {
            users: parse_table(
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nbroken\n",
            ),
            groups: parse_table("root:x:0:\nkeys:x:96:alice\n"),
        };
        assert_eq!(owners.resolve("nobody", "keys").unwrap(), (65534, 96));
        assert_eq!(owners.resolve("1234", "5678").unwrap(), (1234, 5678));
        assert_eq!(
            owners.uid("alice").unwrap_err().to_string(),
            "unknown user `alice`"
        );
        assert_eq!(
            owners.gid("wheel").unwrap_err().to_string(),
            "unknown group `wheel`"
        );
    }
}
