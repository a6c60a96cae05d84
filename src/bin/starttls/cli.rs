//! The command line, declared once: clap parses it, and the same declaration prints `--help`,
//! the shell completions and the manual pages.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use starttls::Protocol;

/// The exit-code contract, printed under `--help` and in the manual pages.
pub const EXIT_STATUS: &str = "\
Exit status: 0 ok, 1 internal, 2 usage, 3 not offered or downgraded, 4 refused,
5 certificate, 6 protocol violation or injection, 7 timeout, 8 network, 9 TLS,
10 authentication, 11 certificate expiring (--warn-days/--crit-days); with
--audit, 6 also for any finding above info.

With --nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.";

/// Test a server's STARTTLS from the shell, serve STARTTLS to clients, or watch it all work on
/// loopback.
#[derive(Parser)]
#[command(
    name = "starttls",
    after_help = EXIT_STATUS,
    subcommand_required = true,
    arg_required_else_help = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Upgrade a connection to SCHEME://HOST[:PORT] and report what happened.
    #[command(after_help = EXIT_STATUS)]
    Check(Box<CheckArgs>),
    /// Serve STARTTLS for a protocol (an SMTP sink, an IMAP server with an empty INBOX, ...).
    Serve(ServeArgs),
    /// Relay a protocol's STARTTLS for tools that cannot speak it: TLS scanners (raw), plaintext
    /// clients (--terminate), plaintext servers (--front).
    #[command(after_help = TUNNEL_AFTER_HELP)]
    Tunnel(Box<TunnelArgs>),
    /// A mail domain's inbound transport security: its MX hosts over STARTTLS, DANE, MTA-STS,
    /// TLS-RPT, and what a sender honouring them would do.
    #[command(after_help = MX_AFTER_HELP)]
    Mx(MxArgs),
    /// Run every protocol's upgrade, both ends, on loopback.
    Demo,
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell).
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
pub struct CheckArgs {
    /// The server: smtp://, submission://, smtps://, lmtp://, imap://, imaps://, pop3://,
    /// pop3s://, ldap://, ldaps://, ftp://, ftps://, xmpp://, xmpp-server://, nntp://, nntps://,
    /// sieve://, postgres://, mysql://, http://, https:// ... followed by HOST[:PORT].
    #[arg(value_name = "SCHEME://HOST[:PORT]")]
    pub url: String,

    /// Trust only these CAs (default: the built-in webpki roots).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<String>,
    /// The name to verify and send in SNI (and XMPP to=) instead of HOST.
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// The EHLO/LHLO name.
    #[arg(long, value_name = "NAME")]
    pub client_name: Option<String>,
    /// Present this client certificate chain (with --client-key).
    #[arg(long, value_name = "PEM", requires = "client_key")]
    pub client_cert: Option<String>,
    /// The client certificate's private key.
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<String>,
    /// Report a server without STARTTLS instead of failing.
    #[arg(long)]
    pub opportunistic: bool,
    /// Accept any certificate, but still report what was wrong with it.
    #[arg(long)]
    pub insecure: bool,
    /// Authenticate the server by this TLSA record instead of the CAs (DANE, RFC 7671/7672):
    /// "USAGE SELECTOR MATCHING-TYPE HEX" as dig prints it, e.g. "3 1 1 0f3c...". DANE-EE (3)
    /// checks no name or date; DANE-TA (2) checks the name under the CA the record names. For
    /// smtp:// usages 0 and 1 are not used, and with no usable record the check exits 5.
    /// Repeatable.
    #[arg(long, value_name = "RECORD", value_parser = parse_tlsa, help_heading = "DANE and pins")]
    pub tlsa: Vec<starttls::TlsaRecord>,
    /// Require the server's public key to match this pin: base64 SHA-256 of its
    /// SubjectPublicKeyInfo, bare or as curl's sha256//... (the report's `key pin`), in
    /// addition to the CAs. Repeatable, for a key rollover.
    #[arg(long, value_name = "BASE64", value_parser = parse_pin, help_heading = "DANE and pins")]
    pub pin_sha256: Vec<String>,
    /// The pins alone decide: no CA, name or date is checked (a self-signed server).
    #[arg(long, requires = "pin_sha256", help_heading = "DANE and pins")]
    pub pin_only: bool,
    /// Look up the host's addresses and its TLSA records (_PORT._tcp.HOST) through a
    /// validating resolver, and authenticate by the records (with any --tlsa) when DNSSEC
    /// vouches for them (RFC 7672). Insecure answers mean no DANE; a failed lookup (SERVFAIL:
    /// bogus) exits 5.
    #[arg(long, help_heading = "DANE and pins")]
    pub dane: bool,
    /// The validating resolver for --dane, trusted to validate (default: resolv.conf's,
    /// trusted only on loopback or with `options trust-ad`).
    #[arg(
        long,
        value_name = "ADDR[:PORT]",
        requires = "dane",
        value_parser = parse_resolver,
        help_heading = "DANE and pins"
    )]
    pub resolver: Option<std::net::SocketAddr>,
    /// The lowest TLS version.
    #[arg(long, value_name = "VERSION", value_parser = ["1.2", "1.3"], default_value = "1.2")]
    pub tls_min: String,
    /// The highest TLS version offered.
    #[arg(long, value_name = "VERSION", value_parser = ["1.2", "1.3"], default_value = "1.3")]
    pub tls_max: String,
    /// Fail as `expiring` (exit 11) when the certificate has N days or fewer left.
    #[arg(long, value_name = "N")]
    pub warn_days: Option<u32>,
    /// The same, CRITICAL for --nagios (at most --warn-days).
    #[arg(long, value_name = "N")]
    pub crit_days: Option<u32>,
    /// One monitoring-plugins line (STARTTLS OK - ... | time=..s days_left=..) and their exit
    /// codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    #[arg(long, conflicts_with = "json")]
    pub nagios: bool,
    /// Per-step timeout in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Print the dialog, before TLS and after.
    #[arg(short, long)]
    pub verbose: bool,
    /// After the check, probe the server with the attacks the library refuses: a command
    /// pipelined after STARTTLS (CVE-2011-0411), a login or mail in plaintext, plaintext where
    /// the ClientHello goes, STARTTLS before the greeting and inside TLS, capabilities across
    /// TLS, TLS 1.0/1.1, and the groups and suites accepted. One polite connection per probe,
    /// no credential sent. Any finding above "info" exits 6.
    #[arg(long, conflicts_with_all = ["user", "sasl_external", "mail_from"])]
    pub audit: bool,

    /// Log in after the upgrade, inside TLS only, with the strongest mechanism offered
    /// (SCRAM-SHA-256-PLUS, SCRAM-SHA-256, PLAIN, ...). LDAP: NAME is the bind DN, e.g.
    /// cn=admin,dc=example,dc=org.
    #[arg(long, value_name = "NAME", help_heading = "Login")]
    pub user: Option<String>,
    /// The password for --user: the first line of a file only its owner can read (else
    /// $STARTTLS_PASSWORD; a password on the command line is refused, as ps would show it).
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Login",
        conflicts_with = "oauth2_token_file"
    )]
    pub password_file: Option<String>,
    /// Log in with this OAuth 2.0 bearer token (first line; chmod 600) instead of a password:
    /// OAUTHBEARER or XOAUTH2.
    #[arg(long, value_name = "FILE", help_heading = "Login")]
    pub oauth2_token_file: Option<String>,
    /// Log in with the --client-cert certificate (SASL EXTERNAL).
    #[arg(
        long,
        help_heading = "Login",
        requires = "client_cert",
        conflicts_with = "user"
    )]
    pub sasl_external: bool,
    /// The authorization identity (SASL).
    #[arg(long, value_name = "NAME", help_heading = "Login")]
    pub authzid: Option<String>,
    /// PostgreSQL: the database to log in to (default: the user name); MySQL: the database to
    /// use after the login.
    #[arg(long, value_name = "NAME", help_heading = "Login", requires = "user")]
    pub database: Option<String>,

    /// smtp/submission/smtps/lmtp: after the upgrade (and the login), send a short dated test
    /// message inside TLS from ADDR.
    #[arg(
        long,
        value_name = "ADDR",
        help_heading = "Test message",
        requires = "rcpt_to"
    )]
    pub mail_from: Option<String>,
    /// A recipient of the test message (repeatable).
    #[arg(
        long,
        value_name = "ADDR",
        help_heading = "Test message",
        requires = "mail_from"
    )]
    pub rcpt_to: Vec<String>,
}

#[derive(Args)]
pub struct ServeArgs {
    /// Any scheme check accepts: smtp, imap, imaps, ldap, xmpp, ...
    #[arg(long, value_name = "P", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Where to listen (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The certificate chain (default: a throw-away CA and certificate for --domain; the CA's
    /// file is printed).
    #[arg(long, value_name = "PEM", requires = "key")]
    pub cert: Option<String>,
    /// The certificate's private key.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<String>,
    /// The server's name in greetings and the throw-away certificate.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub domain: String,
    /// Exit after serving N connections (default: serve until killed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Serve at most N connections at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = super::serve::DEFAULT_MAX_CONCURRENT,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrent: u64,
    /// Close a session idle this long after TLS, in seconds; the whole dialog before TLS gets
    /// at most 4 x 30 s.
    #[arg(long, value_name = "SECS", default_value_t = super::serve::DEFAULT_IDLE_TIMEOUT_SECS,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub idle_timeout: u64,
    /// Print every dialog line.
    #[arg(short, long)]
    pub verbose: bool,
}

const MX_AFTER_HELP: &str = "\
For each MX host (by preference; the domain itself when it has none) and each of its
addresses: STARTTLS on --port, the certificate checked by the host's TLSA records when DNSSEC
vouches for the MX set, the addresses and the records (DANE, RFC 7672), else against the CAs for
the MX name when the domain's MTA-STS policy (RFC 8461, fetched from
https://mta-sts.DOMAIN/.well-known/mta-sts.txt) is in force. Verdicts: secure (authenticated by
DANE or MTA-STS), unauthenticated (opportunistic TLS only), plaintext, refuse (DANE or an
enforced policy not met, or unreachable). The domain's verdict is the first usable MX's.

Exit status: 0 secure, 3 plaintext, 5 unauthenticated or refused, 8 DNS failure, 2 usage.
With --nagios: OK secure, WARNING unauthenticated, CRITICAL plaintext or refused.";

#[derive(Args)]
pub struct MxArgs {
    /// The mail domain (example.org).
    #[arg(value_name = "DOMAIN")]
    pub domain: String,
    /// The validating resolver for every lookup (MX, addresses, TLSA, TXT), trusted to
    /// validate (default: resolv.conf's, trusted only on loopback or with trust-ad).
    #[arg(long, value_name = "ADDR[:PORT]", value_parser = parse_resolver)]
    pub resolver: Option<std::net::SocketAddr>,
    /// Trust only these CAs, for the MX certificates and the MTA-STS policy host (default:
    /// the built-in webpki roots).
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<String>,
    /// The SMTP port of the MX hosts.
    #[arg(long, value_name = "PORT", default_value_t = 25)]
    pub port: u16,
    /// The EHLO name.
    #[arg(long, value_name = "NAME")]
    pub client_name: Option<String>,
    /// Per-step timeout in seconds.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// One JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// One monitoring-plugins line.
    #[arg(long, conflicts_with = "json")]
    pub nagios: bool,
}

const TUNNEL_AFTER_HELP: &str = "\
Examples:
  starttls tunnel --protocol sieve --listen 127.0.0.1:14190 --connect mail.example.org:4190
  openssl s_client -connect 127.0.0.1:14190     # or testssl.sh 127.0.0.1:14190

  starttls tunnel --terminate --protocol submission --listen 127.0.0.1:2587 \\
      --connect mail.example.org:587               # a plaintext client sends through it

  starttls tunnel --front --protocol imap --listen 0.0.0.0:143 --connect 127.0.0.1:1143

Each connection ends with one line on stdout: peer, outcome, the bytes relayed each way
(after the dialog: to_server, to_client), how it ended.
Exit status after --max-connections: 0 every connection relayed, 1 some refused; 2 usage,
8 cannot listen.";

#[derive(Args)]
pub struct TunnelArgs {
    /// The protocol whose dialog runs: any scheme check accepts (smtp, sieve, nntp, xmpp, ...).
    #[arg(long, value_name = "P", value_parser = parse_protocol)]
    pub protocol: Protocol,
    /// Where local clients connect (port 0: any free port, printed).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: String,
    /// The server: HOST[:PORT], the protocol's port by default.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub connect: String,
    /// Plaintext local clients: the tunnel upgrades to the server (verified, required) and
    /// relays plaintext to and from TLS. Not for FTP or MySQL.
    #[arg(long, conflicts_with = "front")]
    pub terminate: bool,
    /// TLS local clients: the tunnel plays the server's STARTTLS dialog and relays decrypted
    /// bytes to a plaintext-only server. Not for FTP or MySQL.
    #[arg(long)]
    pub front: bool,
    /// The name to verify (--terminate) and to name in the dialog (XMPP to=, HTTP Host:),
    /// instead of HOST.
    #[arg(long, value_name = "NAME", conflicts_with = "front")]
    pub servername: Option<String>,
    /// --terminate: trust only these CAs (default: the built-in webpki roots).
    #[arg(long, value_name = "PEM", requires = "terminate")]
    pub ca_file: Option<String>,
    /// The EHLO/LHLO name in the dialog with the server.
    #[arg(long, value_name = "NAME", conflicts_with = "front")]
    pub client_name: Option<String>,
    /// --front: the certificate chain (default: a throw-away CA and certificate for --domain;
    /// the CA's file is printed).
    #[arg(long, value_name = "PEM", requires_all = ["key", "front"])]
    pub cert: Option<String>,
    /// --front: the certificate's private key.
    #[arg(long, value_name = "PEM", requires = "cert")]
    pub key: Option<String>,
    /// --front: the server's name in greetings and the throw-away certificate.
    #[arg(long, value_name = "NAME", default_value = "localhost")]
    pub domain: String,
    /// Exit after N connections have been relayed (default: run until killed).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections: Option<u64>,
    /// Relay at most N connections at once; more wait to be accepted.
    #[arg(long, value_name = "N", default_value_t = super::serve::DEFAULT_MAX_CONCURRENT,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_concurrent: u64,
    /// Close a relay when neither side has sent anything for this long, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub idle_timeout: u64,
    /// Each step of a dialog before the relay (connect, greeting, each reply, handshake).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// Print every dialog line (on stderr).
    #[arg(short, long)]
    pub verbose: bool,
}

fn parse_timeout(t: &str) -> Result<Duration, String> {
    let secs: f64 = t.parse().map_err(|_| "not a number".to_owned())?;
    if !(secs > 0.0 && secs <= 86_400.0) {
        return Err("must be greater than 0 and at most 86400 seconds".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_resolver(r: &str) -> Result<std::net::SocketAddr, String> {
    starttls::Resolver::parse_server(r).map_err(|e| e.to_string())
}

/// A record an operator typed: one that could never match (an unknown usage, a digest of the
/// wrong length) is a typo, refused here rather than ignored as DNS answers are.
fn parse_tlsa(r: &str) -> Result<starttls::TlsaRecord, String> {
    let record: starttls::TlsaRecord = r.parse().map_err(|e: starttls::Error| e.to_string())?;
    match record.unusable(false) {
        Some(why) => Err(format!("{why} in {record} (a typo? it could never match)")),
        None => Ok(record),
    }
}

/// A pin, checked as the library will check it.
fn parse_pin(p: &str) -> Result<String, String> {
    starttls::ClientConfig::builder()
        .pin_sha256(p)
        .pin_only(true)
        .build()
        .map(|_| p.to_owned())
        .map_err(|e| e.to_string())
}

fn parse_protocol(p: &str) -> Result<Protocol, String> {
    p.parse()
        .map_err(|_| format!("unknown protocol (try: {})", super::check::schemes()))
}

/// The command as clap sees it, with the library's version string.
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let version = starttls::version();
    Cli::command().version(version.strip_prefix("starttls ").unwrap_or(version))
}

/// Writes starttls.1 and a page per visible subcommand (starttls-check.1, ...) into `dir`: clap's
/// sections, then EXIT STATUS and ENVIRONMENT in place of clap's untitled "EXTRA".
pub fn write_manpages(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut top = command().disable_help_subcommand(true);
    top.build();
    let mut pages = vec![(top.clone(), "starttls".to_owned())];
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("starttls-{}", sub.get_name());
        pages.push((sub.clone(), name));
    }
    for (cmd, name) in pages {
        let check = name == "starttls-check";
        let man = clap_mangen::Man::new(cmd.clone().after_help(None::<&str>));
        let mut page = Vec::new();
        man.render_title(&mut page)?;
        man.render_name_section(&mut page)?;
        man.render_synopsis_section(&mut page)?;
        man.render_description_section(&mut page)?;
        if cmd.get_arguments().any(|a| !a.is_hide_set()) {
            man.render_options_section(&mut page)?;
        }
        if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
            man.render_subcommands_section(&mut page)?;
        }
        if name == "starttls" || check {
            roff_section(&mut page, "EXIT STATUS", EXIT_STATUS);
        }
        if check {
            roff_section(&mut page, "ENVIRONMENT", ENVIRONMENT);
        }
        if name == "starttls" {
            man.render_version_section(&mut page)?;
        }
        std::fs::write(dir.join(format!("{name}.1")), page)?;
    }
    Ok(())
}

const ENVIRONMENT: &str = "\
STARTTLS_PASSWORD: the password for --user when there is no --password-file.

SSLKEYLOGFILE: when set, the TLS session keys are appended to this file in the NSS key log \
format (for Wireshark); nothing is written without it.";

/// A section of plain text (paragraphs split by blank lines), escaped for roff.
fn roff_section(page: &mut Vec<u8>, title: &str, text: &str) {
    page.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
    for paragraph in text.split("\n\n") {
        page.extend_from_slice(b".PP\n");
        for line in paragraph.lines() {
            let escaped = line.replace('\\', "\\e").replace('-', "\\-");
            page.extend_from_slice(format!("\\&{escaped}\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_declaration_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn timeouts_out_of_range_are_refused() {
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("86401").is_err());
        assert_eq!(parse_timeout("1.5").unwrap(), Duration::from_millis(1500));
    }
}
