//! `--map HOST_PREFIX=REPO_PATH`: where a host's file lives in the configuration repository.
//! The longest host prefix that holds a path wins (compared by whole components: `/etc` holds
//! `/etc/ssh/sshd_config`, not `/etcetera`); a path no prefix holds is not reconciled.

use std::path::{Component, Path};

/// One `--map`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The host's components (`["etc"]` for `/etc`; none for `/`).
    host: Vec<String>,
    /// The repository's components, relative to `--repo` (none for the repository's top).
    repo: Vec<String>,
}

impl Mapping {
    /// Parses `/etc=files/etc`.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let (host, repo) = text.split_once('=').ok_or_else(|| {
            format!("--map {text:?}: expected HOST_PREFIX=REPO_PATH, e.g. /etc=files/etc")
        })?;
        if !host.starts_with('/') {
            return Err(format!(
                "--map {text:?}: the host prefix {host:?} must be an absolute path"
            ));
        }
        if repo.starts_with('/') {
            return Err(format!(
                "--map {text:?}: the repository path {repo:?} must be relative to --repo"
            ));
        }
        let host = components(Path::new(host))
            .map_err(|why| format!("--map {text:?}: the host prefix {why}"))?;
        let repo = components(Path::new(repo))
            .map_err(|why| format!("--map {text:?}: the repository path {why}"))?;
        if repo.first().is_some_and(|c| c == ".git") {
            return Err(format!(
                "--map {text:?}: the repository path is inside .git"
            ));
        }
        Ok(Mapping { host, repo })
    }
}

/// A path's plain components; `..`, and names that are not UTF-8, are refused.
fn components(path: &Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => match name.to_str() {
                Some(name) if !name.chars().any(|c| c.is_control()) => out.push(name.to_owned()),
                _ => return Err("has a name that is not plain UTF-8 text".into()),
            },
            Component::ParentDir => return Err("has a `..`".into()),
            Component::Prefix(_) => return Err("is not a Unix path".into()),
        }
    }
    Ok(out)
}

/// The repository path (relative to `--repo`, `/`-separated) of a host's path, or why there
/// is none.
pub fn map(maps: &[Mapping], host_path: &Path) -> Result<String, String> {
    let path =
        components(host_path).map_err(|why| format!("the path {why}: it is not reconciled"))?;
    let best = maps
        .iter()
        .filter(|m| path.len() >= m.host.len() && path[..m.host.len()] == m.host[..])
        .max_by_key(|m| m.host.len())
        .ok_or_else(|| "outside every --map".to_owned())?;
    let parts: Vec<&str> = best
        .repo
        .iter()
        .chain(&path[best.host.len()..])
        .map(String::as_str)
        .collect();
    if parts.is_empty() {
        return Err("its --map names the repository's top, not a file".into());
    }
    if parts.first() == Some(&".git") {
        return Err("it maps into .git".into());
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maps(specs: &[&str]) -> Vec<Mapping> {
        specs.iter().map(|s| Mapping::parse(s).unwrap()).collect()
    }

    #[test]
    fn the_longest_prefix_wins_by_whole_components() {
        let m = maps(&[
            "/etc=files/etc",
            "/etc/nginx=nginx/conf",
            "/=rootfs",
            "/etc/motd=motd.txt",
        ]);
        let cases = [
            ("/etc/ssh/sshd_config", Ok("files/etc/ssh/sshd_config")),
            ("/etc/nginx/nginx.conf", Ok("nginx/conf/nginx.conf")),
            ("/etc/nginx2/x", Ok("files/etc/nginx2/x")),
            ("/etcetera/x", Ok("rootfs/etcetera/x")),
            ("/etc/motd", Ok("motd.txt")),
            (
                "/etc/../root/x",
                Err("the path has a `..`: it is not reconciled"),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(
                map(&m, Path::new(path)),
                want.map(str::to_owned).map_err(str::to_owned),
                "{path}"
            );
        }
        let only_etc = maps(&["/etc/=./files//etc/"]);
        assert_eq!(
            map(&only_etc, Path::new("/etc/hosts")).unwrap(),
            "files/etc/hosts"
        );
        assert_eq!(
            map(&only_etc, Path::new("/usr/bin/ls")).unwrap_err(),
            "outside every --map"
        );
        assert!(map(&maps(&["/etc="]), Path::new("/etc")).is_err());
        assert!(map(&maps(&["/=."]), Path::new("/.git/config")).is_err());
    }

    #[test]
    fn bad_maps_say_what_is_wrong() {
        for (spec, says) in [
            ("/etc", "expected HOST_PREFIX=REPO_PATH"),
            ("etc=files", "must be an absolute path"),
            ("/etc=/srv/files", "must be relative to --repo"),
            ("/etc=../elsewhere", "has a `..`"),
            ("/etc=.git/hooks", "inside .git"),
        ] {
            let error = Mapping::parse(spec).unwrap_err();
            assert!(error.contains(says), "{spec}: {error}");
        }
    }
}
