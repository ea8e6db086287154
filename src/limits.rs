//! The process's own limits: open files.
//!
//! Every connection, segment file and pipe is a file descriptor, and the
//! soft limit most shells and service managers hand out is 1024: castgate
//! would refuse its 1000th publisher with "too many open files" while the
//! hard limit allows far more. Like nginx's `worker_rlimit_nofile` (and
//! Go's runtime, which does it for every program), castgate raises its soft
//! limit to the hard one at start-up; what the hard limit itself allows is
//! the operator's (`ulimit -Hn`, systemd's `LimitNOFILE`).

/// The soft and hard open-files limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
}

/// The open-files limits now.
pub fn open_files() -> std::io::Result<OpenFiles> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(OpenFiles {
        soft: r.rlim_cur,
        hard: r.rlim_max,
    })
}

/// Raises the soft open-files limit to the hard one; returns the limits
/// before and after.
pub fn raise_open_files() -> std::io::Result<(OpenFiles, OpenFiles)> {
    let before = open_files()?;
    if before.soft >= before.hard {
        return Ok((before, before));
    }
    let r = libc::rlimit {
        rlim_cur: before.hard as libc::rlim_t,
        rlim_max: before.hard as libc::rlim_t,
    };
    // SAFETY: setrlimit reads one `rlimit` we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &r) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((before, open_files()?))
}

/// Says what start-up did to the limit, and warns when it is below what
/// the listeners' connection caps may take (`wanted` descriptors).
pub fn log_open_files(result: &std::io::Result<(OpenFiles, OpenFiles)>, wanted: u64) {
    match result {
        Ok((before, after)) => {
            if after.soft > before.soft {
                tracing::info!(
                    from = before.soft,
                    to = after.soft,
                    "open files limit raised to the hard limit"
                );
            }
            if after.soft < wanted {
                tracing::warn!(
                    limit = after.soft,
                    wanted,
                    "the open files limit is below what the connection caps allow: connections \
                     past it are refused; raise the hard limit (ulimit -Hn, systemd LimitNOFILE)"
                );
            }
        }
        Err(e) => tracing::warn!("could not raise the open files limit: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lowers the soft limit, then raises it back to the hard one (in a
    /// child process: the limit is process-wide and other tests open files).
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        if std::env::var_os("CASTGATE_LIMITS_CHILD").is_some() {
            let now = open_files().unwrap();
            let low = libc::rlimit {
                rlim_cur: 256.min(now.hard) as libc::rlim_t,
                rlim_max: now.hard as libc::rlim_t,
            };
            // SAFETY: as in raise_open_files.
            assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
            let (before, after) = raise_open_files().unwrap();
            assert_eq!(before.soft, 256.min(now.hard));
            assert_eq!(after.soft, now.hard);
            assert_eq!(after.hard, now.hard);
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "limits::tests::the_soft_limit_is_raised_to_the_hard_one",
            ])
            .env("CASTGATE_LIMITS_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "the child ran no test: {text}");
    }
}
