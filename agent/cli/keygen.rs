//! `coolmesh keygen`: the node's identity (its PeerId), or a new cluster
//! pre-shared key with `--psk`.

use crate::args::KeygenArgs;
use std::process::ExitCode;

pub fn main(args: KeygenArgs) -> ExitCode {
    if args.psk {
        let key = coolmesh_agent::cluster::generate_psk();
        match &args.out {
            None => print!("{key}"),
            Some(path) => {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                // create_new: an existing key is never overwritten (that
                // would split a running room in two).
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path);
                match f.and_then(|mut f| f.write_all(key.as_bytes()).and_then(|_| f.sync_all())) {
                    Ok(()) => eprintln!(
                        "wrote {p} (mode 0600); copy the same file to every server, there {}, and set cluster.psk_file",
                        coolmesh_agent::perms::fix(path, "coolmesh"),
                        p = path.display()
                    ),
                    Err(e) => {
                        eprintln!(
                            "coolmesh: {}: {e} (remove it first if you really want a new key)",
                            path.display()
                        );
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(&args.state_dir) {
        eprintln!(
            "coolmesh: {}: {e} (pass --state-dir)",
            args.state_dir.display()
        );
        return ExitCode::FAILURE;
    }
    match coolmesh_agent::cluster::load_or_create_identity(&args.state_dir) {
        Ok(k) => {
            println!("{}", k.public().to_peer_id());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("coolmesh: {e:#}");
            ExitCode::FAILURE
        }
    }
}
