//! POSIX ACLs through a real mount: set and read with setfacl/getfacl,
//! enforced by the kernel, inherited from default ACLs on create, kept in
//! step with chmod, and carried by `cp -a` and `rsync -A`; xattr
//! namespaces as ext4 has them.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::harness::{run, Mount};

fn getfacl(dir: &Path, file: &str) -> String {
    run(dir, "getfacl", &["--omit-header", "--numeric", file])
}

/// Run `cmd` as uid/gid 65534 with no supplementary groups; true if it succeeded.
fn as_nobody(dir: &Path, cmd: &[&str]) -> bool {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(cmd)
        .current_dir(dir)
        .output()
        .expect("setpriv (util-linux) runs")
        .status
        .success()
}

#[test]
fn acls_are_stored_enforced_and_kept_in_step_with_the_mode() {
    let m = Mount::persistent(&["-o", "allow_other"]);
    let dir = m.mountpoint.clone();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(m.path("f"), b"secret").unwrap();
    fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o600)).unwrap();
    assert!(!as_nobody(&dir, &["cat", "f"]), "0600 keeps nobody out");
    run(&dir, "setfacl", &["-m", "u:65534:r", "f"]);
    let acl = getfacl(&dir, "f");
    assert!(acl.contains("user:65534:r--") && acl.contains("mask::r--"), "{acl}");
    assert_eq!(fs::metadata(m.path("f")).unwrap().mode() & 0o777, 0o640, "the mask shows as the group bits");
    assert!(as_nobody(&dir, &["cat", "f"]), "the named entry lets nobody read");
    run(&dir, "chmod", &["600", "f"]);
    assert!(getfacl(&dir, "f").contains("mask::---"), "chmod rewrites the mask");
    assert!(!as_nobody(&dir, &["cat", "f"]), "and the kernel sees it at once");
    run(&dir, "setfacl", &["-b", "f"]);
    assert!(!getfacl(&dir, "f").contains("user:65534"), "setfacl -b removes the named entries");
}

#[test]
fn default_acls_are_inherited_and_replace_the_umask() {
    let m = Mount::persistent(&[]);
    let dir = m.mountpoint.clone();
    fs::create_dir(m.path("d")).unwrap();
    run(&dir, "setfacl", &["-d", "-m", "u:65534:rwx,g::rx,o::-", "d"]);
    fs::write(m.path("d/f"), b"").unwrap();
    fs::create_dir(m.path("d/sub")).unwrap();
    let f = getfacl(&dir, "d/f");
    assert!(f.contains("user:65534:rwx") && f.contains("other::---"), "a new file gets the default ACL:\n{f}");
    let sub = getfacl(&dir, "d/sub");
    assert!(sub.contains("default:user:65534:rwx"), "a new directory inherits the default ACL too:\n{sub}");
    // Without a default ACL the umask applies (the kernel leaves it to us).
    let out = Command::new("sh").args(["-c", "umask 027; mkdir plain; touch plain/t"]).current_dir(&dir).status().unwrap();
    assert!(out.success());
    assert_eq!(fs::metadata(m.path("plain")).unwrap().mode() & 0o777, 0o750);
    assert_eq!(fs::metadata(m.path("plain/t")).unwrap().mode() & 0o777, 0o640);
}

#[test]
fn cp_a_and_rsync_a_keep_acls() {
    let m = Mount::persistent(&[]);
    let dir = m.mountpoint.clone();
    fs::create_dir(m.path("src")).unwrap();
    fs::write(m.path("src/f"), b"x").unwrap();
    run(&dir, "setfacl", &["-m", "u:65534:rw,g:65534:r", "src/f"]);
    run(&dir, "setfacl", &["-d", "-m", "u:65534:rx", "src"]);
    run(&dir, "cp", &["-a", "src", "cp"]);
    run(&dir, "rsync", &["-aA", "src/", "rs/"]);
    for copy in ["cp", "rs"] {
        assert_eq!(getfacl(&dir, &format!("{copy}/f")), getfacl(&dir, "src/f"), "{copy}");
        assert_eq!(getfacl(&dir, copy), getfacl(&dir, "src"), "{copy}");
    }
}

#[test]
fn xattr_namespaces_are_ext4s() {
    let m = Mount::persistent(&["-o", "allow_other"]);
    let dir = m.mountpoint.clone();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(m.path("f"), b"").unwrap();
    fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o666)).unwrap();
    let set = |name: &str| Command::new("setfattr").args(["-n", name, "-v", "1", "f"]).current_dir(&dir).output().unwrap();
    for ok in ["user.a", "trusted.b", "security.c"] {
        assert!(set(ok).status.success(), "{ok}: {}", String::from_utf8_lossy(&set(ok).stderr));
    }
    let bogus = set("bogus.x");
    assert!(!bogus.status.success() && String::from_utf8_lossy(&bogus.stderr).contains("not supported"));
    let listed_by = |root: bool| {
        let mut cmd = Command::new(if root { "getfattr" } else { "setpriv" });
        if !root {
            cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "getfattr"]);
        }
        let out = cmd.args(["-d", "-m", "-", "f"]).current_dir(&dir).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(listed_by(true).contains("trusted.b"));
    let seen = listed_by(false);
    assert!(seen.contains("user.a") && !seen.contains("trusted.b"), "trusted.* is listed to root only:\n{seen}");
    assert!(!as_nobody(&dir, &["setfattr", "-n", "trusted.z", "-v", "1", "f"]), "and written by root only");
}
