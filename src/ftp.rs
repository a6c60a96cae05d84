//! FTP's protected data channel (RFC 4217 §9, §10): `PBSZ 0` + `PROT P`, a passive data
//! connection to the control connection's own peer, and TLS on it that resumes the control
//! connection's session (ProFTPD and vsftpd require that; it proves the data connection comes
//! from the same client).

use crate::error::{Error, Phase, Result};
use crate::handshake::parse_server_name;
use crate::protocol::{DialogContext, PreTls, Protocol, ftp};
use crate::stream::{Connection, Side};
use crate::wire::prepare_socket;

impl Connection {
    /// FTP: sends `PBSZ 0` and `PROT P` (once), so that data connections are protected.
    /// [`ftp_data`](Self::ftp_data) calls it when needed.
    pub fn ftp_protect_data(&mut self) -> Result<()> {
        self.require_ftp()?;
        if self.dialog.session.ftp_data_protected {
            return Ok(());
        }
        self.inside_tls(|w, ctx| {
            ftp::command(w, ctx, "PBSZ 0", &[200])?;
            ftp::command(w, ctx, "PROT P", &[200]).map(|_| ())
        })?;
        self.dialog.session.ftp_data_protected = true;
        Ok(())
    }

    /// FTP: opens a protected data connection for `command` (`RETR name`, `LIST`, `STOR name`,
    /// ...): EPSV (PASV as a fallback on IPv4), a TCP connection to the control connection's peer
    /// (the address in a PASV reply is ignored), the command, its `125`/`150` reply, then TLS on
    /// the data connection, resuming the control session and verifying the same server name.
    ///
    /// Read (or write and [`close`](Connection::close)) the returned connection to its end, then
    /// call [`ftp_finish`](Self::ftp_finish) for the transfer's final reply.
    pub fn ftp_data(&mut self, command: &str) -> Result<Connection> {
        self.require_ftp()?;
        if command.is_empty() || command.contains(['\r', '\n', '\0']) {
            return Err(Error::InvalidArgument(
                "an FTP command is one non-empty line".into(),
            ));
        }
        self.ftp_protect_data()?;
        let peer = self
            .peer_addr()
            .ok_or_else(|| Error::InvalidArgument("the control connection has no peer".into()))?;
        let port = self.inside_tls(|w, ctx| {
            let reply = match ftp::command(w, ctx, "EPSV", &[229]) {
                Ok(r) => r,
                Err(Error::Refused { .. }) if peer.is_ipv4() => {
                    ftp::command(w, ctx, "PASV", &[227])?
                }
                Err(e) => return Err(e),
            };
            ftp::data_port(&reply)
        })?;
        let Side::Client(config) = self.side.clone() else {
            return Err(Error::InvalidArgument(
                "FTP data channels are client-side".into(),
            ));
        };
        // The peer's own address (an IPv6 zone index included), with the passive port.
        let mut data_addr = peer;
        data_addr.set_port(port);
        let tcp = std::net::TcpStream::connect_timeout(&data_addr, config.timeouts().connect)
            .map_err(|e| Error::from_io(Phase::Connect, e))?;
        // The server starts TLS on the data connection once it has the transfer command.
        self.inside_tls(|w, ctx| ftp::command(w, ctx, command, &[125, 150]))?;
        prepare_socket(&tcp, false)?;
        let server_name = self.server_name().to_owned();
        let name = parse_server_name(&server_name)?;
        let ctx = DialogContext::new(
            config.policy(),
            config.timeouts(),
            self.dialog.client_name.clone(),
            server_name,
            Some(port),
        );
        let mut conn = Connection::client_tls(
            &config,
            Protocol::Tls,
            tcp,
            name,
            true,
            ctx,
            PreTls::new(),
            vec![],
            self.dane.clone(),
        )?;
        conn.client_first_steps_inside_tls()?;
        Ok(conn)
    }

    /// FTP: reads the final reply of a transfer (`226` or `250`) and returns it.
    pub fn ftp_finish(&mut self) -> Result<String> {
        self.require_ftp()?;
        self.inside_tls(|w, ctx| {
            let reply = ftp::read_reply(w, &ctx.deadline(Phase::Read))?;
            match reply.code {
                226 | 250 => Ok(reply.text()),
                _ => Err(Error::Refused {
                    phase: Phase::Read,
                    reply: reply.text(),
                }),
            }
        })
    }

    fn require_ftp(&self) -> Result<()> {
        if matches!(self.protocol(), Protocol::Ftp | Protocol::Ftps) {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "not an FTP connection ({})",
                self.protocol()
            )))
        }
    }
}
