//! Users and groups from `/etc/passwd` and `/etc/group` (files only: users known only to
//! NSS, LDAP for example, are members of `api.group` only through their primary group).

use std::path::Path;

/// A group: its gid and its listed members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub gid: u32,
    pub members: Vec<String>,
}

/// The group named `name` in an `/etc/group` text.
pub fn parse_group(text: &str, name: &str) -> Option<Group> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == name).then_some(())?;
        let _password = f.next()?;
        let gid = f.next()?.parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Group { gid, members })
    })
}

/// The name of the user `uid` in an `/etc/passwd` text.
pub fn parse_user_name(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        (f.next()?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
    })
}

/// The group `name` from `/etc/group`.
pub fn group(etc: &Path, name: &str) -> Option<Group> {
    parse_group(&std::fs::read_to_string(etc.join("group")).ok()?, name)
}

/// Whether the peer (`uid`, primary `gid`) belongs to `group`.
pub fn is_member(etc: &Path, group: &Group, uid: u32, gid: u32) -> bool {
    gid == group.gid
        || std::fs::read_to_string(etc.join("passwd"))
            .ok()
            .and_then(|t| parse_user_name(&t, uid))
            .is_some_and(|name| group.members.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_group_and_passwd() {
        let g = "root:x:0:\nadm:x:4:syslog,alice\nmonitor:x:990:\n";
        assert_eq!(
            parse_group(g, "adm"),
            Some(Group {
                gid: 4,
                members: vec!["syslog".into(), "alice".into()]
            })
        );
        assert_eq!(parse_group(g, "monitor").map(|g| g.gid), Some(990));
        assert_eq!(parse_group(g, "nope"), None);
        let p = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(parse_user_name(p, 1000).as_deref(), Some("alice"));
        assert_eq!(parse_user_name(p, 5), None);
    }
}
