//! systemd's readiness protocol (sd_notify): with `Type=notify`, systemd waits for READY=1
//! before starting units ordered after wormfs (rsyslog must not write into an empty mountpoint).

use std::os::unix::net::UnixDatagram;

use log::{debug, warn};
use nix::sys::socket::{sendto, MsgFlags, UnixAddr};

/// Send `state` (e.g. "READY=1") to $NOTIFY_SOCKET, if systemd gave us one.
pub fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let target = target.to_string_lossy().into_owned();
    let addr = if let Some(name) = target.strip_prefix('@') {
        UnixAddr::new_abstract(name.as_bytes())
    } else {
        UnixAddr::new(target.as_str())
    };
    let sent = addr.map_err(std::io::Error::from).and_then(|addr| {
        let socket = UnixDatagram::unbound()?;
        sendto(std::os::fd::AsRawFd::as_raw_fd(&socket), state.as_bytes(), &addr, MsgFlags::empty())
            .map_err(std::io::Error::from)
    });
    match sent {
        Ok(_) => debug!("sd_notify: {}", state.replace('\n', " ")),
        Err(e) => warn!("sd_notify to {target} failed: {e}"),
    }
}
