//! LDAP StartTLS (RFC 4511 §4.14, RFC 4513 §3): both sides of the exchange before TLS, the
//! simple bind inside it, and the unbind.
//!
//! ExtendedRequest `1.3.6.1.4.1.1466.20037` (BER) → ExtendedResponse with resultCode 0 → TLS.
//! The response is read with a small strict BER reader: definite lengths only, bounded sizes,
//! every element in its place. A Notice of Disconnection, any other PDU, another message id or
//! another response name fails; other unsolicited notifications (message id 0) are set aside,
//! a few at most, and never taken for the answer.

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{AuthOutcome, External, Login, Mechanism, Proof, Secret};
use crate::protocol::{Dialog, DialogContext, PreTls, ServerContext, ServerPreTls};
use crate::wire::ber::{Ber, encode_id, integer, tlv};
use crate::wire::{Deadline, Direction, Wire, printable};

const START_TLS_OID: &[u8] = b"1.3.6.1.4.1.1466.20037";
const NOTICE_OF_DISCONNECTION_OID: &[u8] = b"1.3.6.1.4.1.1466.20036";
/// Unsolicited notifications set aside while an answer is due, at most.
const MAX_UNSOLICITED: usize = 8;
/// The largest LDAPMessage accepted before TLS (a StartTLS response is tens of bytes).
const MAX_MESSAGE: usize = 16 * 1024;
/// The message id of our one request.
const MESSAGE_ID: i64 = 1;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_UNBIND_REQUEST: u8 = 0x42;
const TAG_INTEGER: u8 = 0x02;
const TAG_ENUMERATED: u8 = 0x0a;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_EXTENDED_REQUEST: u8 = 0x77; // [APPLICATION 23], constructed
const TAG_EXTENDED_RESPONSE: u8 = 0x78; // [APPLICATION 24], constructed
const TAG_REQUEST_NAME: u8 = 0x80; // [0], primitive
const TAG_REFERRAL: u8 = 0xa3; // [3], constructed
const TAG_RESPONSE_NAME: u8 = 0x8a; // [10], primitive
const TAG_RESPONSE_VALUE: u8 = 0x8b; // [11], primitive
const TAG_CONTROLS: u8 = 0xa0; // [0], constructed
const TAG_BIND_REQUEST: u8 = 0x60; // [APPLICATION 0], constructed
const TAG_BIND_RESPONSE: u8 = 0x61; // [APPLICATION 1], constructed
const TAG_SIMPLE_AUTH: u8 = 0x80; // [0], primitive
const TAG_SASL_AUTH: u8 = 0xa3; // [3] SaslCredentials, constructed
const TAG_SASL_CREDS: u8 = 0x87; // [7], primitive

/// The encoded StartTLS ExtendedRequest.
pub(crate) fn start_tls_request() -> Vec<u8> {
    let name = tlv(TAG_REQUEST_NAME, START_TLS_OID);
    let op = tlv(TAG_EXTENDED_REQUEST, &name);
    let mut body = tlv(TAG_INTEGER, &[MESSAGE_ID as u8]);
    body.extend_from_slice(&op);
    tlv(TAG_SEQUENCE, &body)
}

/// A decoded ExtendedResponse.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ExtendedResponse {
    pub message_id: i64,
    pub result_code: i64,
    pub diagnostic: String,
    pub response_name: Option<Vec<u8>>,
}

impl ExtendedResponse {
    fn describe(&self) -> String {
        let name = result_name(self.result_code);
        if self.diagnostic.is_empty() {
            format!("resultCode {} ({name})", self.result_code)
        } else {
            format!(
                "resultCode {} ({name}): {}",
                self.result_code, self.diagnostic
            )
        }
    }
}

fn result_name(code: i64) -> &'static str {
    match code {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "unknown",
    }
}

/// Decodes the content of an LDAPMessage SEQUENCE holding an ExtendedResponse.
pub(crate) fn parse_response(content: &[u8]) -> std::result::Result<ExtendedResponse, String> {
    parse_result(content, TAG_EXTENDED_RESPONSE)
}

/// Decodes an LDAPMessage holding an LDAPResult in a response of `expected` tag (BindResponse
/// may also carry serverSaslCreds, ExtendedResponse a name and value).
fn parse_result(content: &[u8], expected: u8) -> std::result::Result<ExtendedResponse, String> {
    let mut msg = Ber::new(content);
    let message_id = integer(msg.expect(TAG_INTEGER, "messageID is not an INTEGER")?)?;
    let (tag, op) = msg.next()?;
    if tag != expected {
        return Err(format!(
            "expected response tag {expected:#04x}, got PDU tag {tag:#04x}"
        ));
    }
    if let Some(TAG_CONTROLS) = msg.peek_tag() {
        msg.next()?;
    }
    if !msg.is_empty() {
        return Err("data after the response".into());
    }
    let mut op = Ber::new(op);
    let result_code = integer(op.expect(TAG_ENUMERATED, "resultCode is not ENUMERATED")?)?;
    op.expect(TAG_OCTET_STRING, "matchedDN is not an OCTET STRING")?;
    let diagnostic =
        printable(op.expect(TAG_OCTET_STRING, "diagnosticMessage is not an OCTET STRING")?);
    if op.peek_tag() == Some(TAG_REFERRAL) {
        op.next()?;
    }
    let mut response_name = None;
    if op.peek_tag() == Some(TAG_RESPONSE_NAME) {
        response_name = Some(op.next()?.1.to_vec());
    }
    if op.peek_tag() == Some(TAG_RESPONSE_VALUE) || op.peek_tag() == Some(TAG_SASL_CREDS) {
        op.next()?;
    }
    if !op.is_empty() {
        return Err("unexpected element in the ExtendedResponse".into());
    }
    Ok(ExtendedResponse {
        message_id,
        result_code,
        diagnostic,
        response_name,
    })
}

/// Reads one LDAPMessage from the wire: exactly its bytes, bounded by [`MAX_MESSAGE`].
fn read_message(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<Vec<u8>> {
    let phase = deadline.phase();
    let bad = |what: &str| Error::violation(phase, format!("LDAP: {what}"));
    let tag = wire.read_bytes(1, deadline)?;
    if tag[0] != TAG_SEQUENCE {
        return Err(bad(&format!(
            "expected an LDAPMessage SEQUENCE, got tag {:#04x}",
            tag[0]
        )));
    }
    let first = wire.read_bytes(1, deadline)?[0];
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 {
            return Err(bad("indefinite length"));
        }
        if n > 4 {
            return Err(bad("length too long"));
        }
        let bytes = wire.read_bytes(n, deadline)?;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    if len > MAX_MESSAGE {
        return Err(bad(&format!(
            "message of {len} bytes (limit {MAX_MESSAGE})"
        )));
    }
    wire.read_bytes(len, deadline)
}

pub(crate) fn client_starttls(wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
    let mut pre = PreTls::new();
    let deadline = ctx.deadline(Phase::StartTls);
    wire.send_message(&start_tls_request(), &deadline)?;
    wire.note(
        Direction::Sent,
        "ExtendedRequest StartTLS (1.3.6.1.4.1.1466.20037)".into(),
    );
    let mut unsolicited = 0;
    let (response, text) = loop {
        let content = read_message(wire, &deadline)?;
        let response = parse_response(&content)
            .map_err(|e| Error::violation(Phase::StartTls, format!("LDAP: {e}")))?;
        let text = response.describe();
        wire.note(Direction::Received, format!("ExtendedResponse {text}"));
        if response.response_name.as_deref() == Some(NOTICE_OF_DISCONNECTION_OID) {
            return Err(Error::Refused {
                phase: Phase::StartTls,
                reply: format!("Notice of Disconnection: {text}"),
            });
        }
        // Other unsolicited notifications (RFC 4511 §4.4) are set aside: never the answer.
        if response.message_id != 0 {
            break (response, text);
        }
        unsolicited += 1;
        if unsolicited > MAX_UNSOLICITED {
            return Err(Error::violation(
                Phase::StartTls,
                format!("more than {MAX_UNSOLICITED} unsolicited notifications"),
            ));
        }
    };
    if response.message_id != MESSAGE_ID {
        return Err(Error::violation_in(
            Phase::StartTls,
            format!(
                "response to message id {}, not {MESSAGE_ID}",
                response.message_id
            ),
            &text,
        ));
    }
    if let Some(name) = &response.response_name {
        if name.as_slice() != START_TLS_OID {
            return Err(Error::violation_in(
                Phase::StartTls,
                "response names another operation",
                &printable(name),
            ));
        }
    }
    if response.result_code == 0 {
        pre.starttls_offered = Some(true);
        return Ok(pre);
    }
    pre.starttls_offered = Some(false);
    let reason = Error::Refused {
        phase: Phase::StartTls,
        reply: text,
    };
    ctx.tls_impossible(pre, reason)
}

// --- authentication inside TLS ---

/// A simple bind (RFC 4511 §4.2) with the user name as the DN, inside TLS.
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    login: &Login<'_>,
) -> Result<AuthOutcome> {
    let creds = login.creds;
    let deadline = ctx.deadline(Phase::Read);
    // A simple bind with a password, or a SASL bind with EXTERNAL: the TLS client certificate
    // is the identity (RFC 4513 §5.2.3), the credentials the authorization identity, if any.
    let (mechanism, dn, password): (&'static str, &str, Secret) = match creds.proof() {
        Proof::Password if creds.allows_protocol_login() => (
            "simple bind",
            creds.user(),
            Secret::from_vec(tlv(TAG_SIMPLE_AUTH, creds.password().as_bytes())),
        ),
        Proof::ClientCertificate => {
            let mut external = External(creds);
            let authzid = external.initial()?;
            let mut sasl = tlv(TAG_OCTET_STRING, b"EXTERNAL");
            if !authzid.as_bytes().is_empty() {
                sasl.extend_from_slice(&tlv(TAG_OCTET_STRING, authzid.as_bytes()));
            }
            ("EXTERNAL", "", Secret::from_vec(tlv(TAG_SASL_AUTH, &sasl)))
        }
        _ => {
            return Err(Error::NoLoginMechanism {
                reply: "LDAP logins here are a simple bind with a password or SASL EXTERNAL with \
                     a client certificate"
                    .into(),
            });
        }
    };
    ctx.session.next_id += 1;
    let id = i64::from(ctx.session.next_id);
    // Every buffer that holds the password is a Secret (zeroed on drop), and each is built at
    // its exact size by `tlv`.
    let version = tlv(TAG_INTEGER, &[3]);
    let name = tlv(TAG_OCTET_STRING, dn.as_bytes());
    let mut bind = Vec::with_capacity(version.len() + name.len() + password.as_bytes().len());
    bind.extend_from_slice(&version);
    bind.extend_from_slice(&name);
    bind.extend_from_slice(password.as_bytes());
    let bind = Secret::from_vec(bind);
    let bind_request = Secret::from_vec(tlv(TAG_BIND_REQUEST, bind.as_bytes()));
    let message_id = tlv(TAG_INTEGER, &encode_id(id));
    let mut body = Vec::with_capacity(message_id.len() + bind_request.as_bytes().len());
    body.extend_from_slice(&message_id);
    body.extend_from_slice(bind_request.as_bytes());
    let body = Secret::from_vec(body);
    let message = Secret::from_vec(tlv(TAG_SEQUENCE, body.as_bytes()));
    wire.send_message(message.as_bytes(), &deadline)?;
    wire.note(
        Direction::Sent,
        if mechanism == "EXTERNAL" {
            "BindRequest (SASL EXTERNAL)".into()
        } else {
            "BindRequest (simple, <credentials>)".into()
        },
    );
    let content = read_message(wire, &deadline)?;
    let response = parse_result(&content, TAG_BIND_RESPONSE)
        .map_err(|e| Error::violation(Phase::Read, format!("LDAP: {e}")))?;
    let text = response.describe();
    wire.note(Direction::Received, format!("BindResponse {text}"));
    if response.message_id != id {
        return Err(Error::violation_in(
            Phase::Read,
            "response to another message",
            &text,
        ));
    }
    if response.result_code == 0 {
        Ok(AuthOutcome::new(mechanism, text))
    } else {
        Err(Error::AuthFailed {
            mechanism,
            reply: text,
        })
    }
}

// --- server side ---

const RESULT_PROTOCOL_ERROR: u8 = 2;
const RESULT_CONFIDENTIALITY_REQUIRED: u8 = 13;

/// A minimal two's-complement INTEGER for a non-negative message id.
/// An LDAPMessage carrying an LDAPResult in a response of `tag`.
fn result_message(id: i64, tag: u8, code: u8, diag: &str, name: Option<&[u8]>) -> Vec<u8> {
    let mut op = tlv(TAG_ENUMERATED, &[code]);
    op.extend(tlv(TAG_OCTET_STRING, b""));
    op.extend(tlv(TAG_OCTET_STRING, diag.as_bytes()));
    if let Some(n) = name {
        op.extend(tlv(TAG_RESPONSE_NAME, n));
    }
    let mut body = tlv(TAG_INTEGER, &encode_id(id));
    body.extend(tlv(tag, &op));
    tlv(TAG_SEQUENCE, &body)
}

/// The response operation for a request operation, when it has one.
fn response_tag(request: u8) -> Option<u8> {
    match request {
        0x60 => Some(0x61), // Bind
        0x63 => Some(0x65), // Search → SearchResultDone
        0x66 => Some(0x67), // Modify
        0x68 => Some(0x69), // Add
        0x4a => Some(0x6b), // Delete (primitive request)
        0x6c => Some(0x6d), // ModifyDN
        0x6e => Some(0x6f), // Compare
        TAG_EXTENDED_REQUEST => Some(TAG_EXTENDED_RESPONSE),
        _ => None,
    }
}

/// The server's side: the StartTLS ExtendedRequest gets success; any other operation gets
/// `confidentialityRequired` (a Bind with credentials included), Unbind ends the session, and
/// anything unknown gets a Notice of Disconnection.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
) -> Result<ServerPreTls> {
    for _ in 0..super::MAX_COMMANDS_BEFORE_TLS {
        let deadline = ctx.deadline(Phase::StartTls);
        let content = read_message(wire, &deadline)?;
        let bad = |what: &str| Error::violation(Phase::StartTls, format!("LDAP: {what}"));
        let mut msg = Ber::new(&content);
        let id = msg
            .expect(TAG_INTEGER, "messageID is not an INTEGER")
            .and_then(integer)
            .map_err(bad)?;
        let (tag, op) = msg.next().map_err(bad)?;
        if !(0..=i64::from(i32::MAX)).contains(&id) {
            return Err(bad("message id out of range"));
        }
        let is_starttls = tag == TAG_EXTENDED_REQUEST
            && Ber::new(op).expect(TAG_REQUEST_NAME, "no requestName") == Ok(START_TLS_OID);
        wire.note(
            Direction::Received,
            if is_starttls {
                format!("ExtendedRequest StartTLS (message {id})")
            } else {
                format!("request tag {tag:#04x} (message {id})")
            },
        );
        if is_starttls {
            wire.ensure_nothing_after_go_ahead()?;
            let reply = result_message(id, TAG_EXTENDED_RESPONSE, 0, "", Some(START_TLS_OID));
            wire.send_raw(&reply, &deadline)?;
            wire.note(
                Direction::Sent,
                "ExtendedResponse resultCode 0 (success)".into(),
            );
            return Ok(ServerPreTls::default());
        }
        let (code, diag) = if tag == TAG_EXTENDED_REQUEST {
            (RESULT_PROTOCOL_ERROR, "unsupported extended operation")
        } else {
            (
                RESULT_CONFIDENTIALITY_REQUIRED,
                "StartTLS is required first",
            )
        };
        match (tag, response_tag(tag)) {
            (0x42, _) => return Err(super::client_quit()), // UnbindRequest
            (0x50, _) => {}                                // AbandonRequest: no response
            (_, Some(response)) => {
                wire.send_raw(&result_message(id, response, code, diag, None), &deadline)?;
                wire.note(
                    Direction::Sent,
                    format!("response {response:#04x} resultCode {code}"),
                );
            }
            (_, None) => {
                let notice = result_message(
                    0,
                    TAG_EXTENDED_RESPONSE,
                    RESULT_PROTOCOL_ERROR,
                    "unknown operation",
                    Some(NOTICE_OF_DISCONNECTION_OID),
                );
                wire.send_raw(&notice, &deadline)?;
                wire.note(Direction::Sent, "Notice of Disconnection".into());
                return Err(bad(&format!("unknown operation tag {tag:#04x}")));
            }
        }
    }
    Err(Error::violation(
        Phase::StartTls,
        format!(
            "more than {} requests before StartTLS",
            super::MAX_COMMANDS_BEFORE_TLS
        ),
    ))
}

/// LDAP's StartTLS extended operation (RFC 4511 §4.14).
pub(crate) struct Ldap;

impl Dialog for Ldap {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx)
    }

    fn has_capabilities(&self) -> bool {
        false
    }

    fn has_login(&self) -> bool {
        true
    }

    fn client_authenticate(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
        _caps: &[String],
        login: &Login<'_>,
    ) -> Result<AuthOutcome> {
        client_authenticate(wire, ctx, login)
    }

    /// An UnbindRequest, which has no response.
    fn client_goodbye(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<()> {
        ctx.session.next_id += 1;
        let id = i64::from(ctx.session.next_id);
        let mut body = encode_id(id);
        body.extend_from_slice(&[TAG_UNBIND_REQUEST, 0x00]);
        wire.send_message(&tlv(TAG_SEQUENCE, &body), &ctx.deadline(Phase::Close))?;
        wire.note(Direction::Sent, "UnbindRequest".into());
        Ok(())
    }

    fn server_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &ServerContext<'_>,
    ) -> Result<ServerPreTls> {
        server_starttls(wire, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::error::ErrorKind;
    use crate::protocol::Outcome;
    use crate::protocol::testing::with_ctx;
    use crate::wire::Limits;
    use crate::wire::script::{Script, Step};

    /// An LDAPMessage with an ExtendedResponse, built from parts.
    fn response(id: u8, code: u8, diag: &[u8], name: Option<&[u8]>) -> Vec<u8> {
        let mut op = tlv(TAG_ENUMERATED, &[code]);
        op.extend(tlv(TAG_OCTET_STRING, b""));
        op.extend(tlv(TAG_OCTET_STRING, diag));
        if let Some(n) = name {
            op.extend(tlv(TAG_RESPONSE_NAME, n));
        }
        let mut body = tlv(TAG_INTEGER, &[id]);
        body.extend(tlv(TAG_EXTENDED_RESPONSE, &op));
        tlv(TAG_SEQUENCE, &body)
    }

    fn leak(v: Vec<u8>) -> &'static [u8] {
        Box::leak(v.into_boxed_slice())
    }

    fn run(policy: Policy, reply: Vec<Step>) -> (Result<PreTls>, Script) {
        let request = leak(start_tls_request());
        let mut steps = vec![Step::Client(request)];
        steps.extend(reply);
        let mut s = Script::new(steps);
        let r = with_ctx(policy, |ctx| {
            client_starttls(&mut Wire::new(&mut s, Limits::default()), ctx)
        });
        (r, s)
    }

    #[test]
    fn request_encoding_is_exact() {
        let mut expected = vec![0x30, 0x1d, 0x02, 0x01, 0x01, 0x77, 0x18, 0x80, 0x16];
        expected.extend_from_slice(START_TLS_OID);
        assert_eq!(start_tls_request(), expected);
    }

    #[test]
    fn non_zero_result_is_a_refusal_with_its_name() {
        let (r, s) = run(
            Policy::Require,
            vec![Step::Server(leak(response(
                1,
                2,
                b"unsupported extended operation",
                None,
            )))],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(e.to_string().contains("protocolError"), "{e}");
        assert!(
            e.to_string().contains("unsupported extended operation"),
            "{e}"
        );
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn notice_of_disconnection_is_an_error_even_when_opportunistic() {
        let (r, _) = run(
            Policy::Opportunistic,
            vec![Step::Server(leak(response(
                0,
                52,
                b"shutting down",
                Some(NOTICE_OF_DISCONNECTION_OID),
            )))],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(e.to_string().contains("Notice of Disconnection"));
    }

    /// RFC 4511 §4.4: unsolicited notifications (message id 0) may come at any time. Others
    /// than the Notice of Disconnection are set aside, bounded, and never taken for the answer.
    #[test]
    fn unsolicited_notifications_are_set_aside_and_never_the_go_ahead() {
        let notice = response(0, 0, b"", Some(b"1.3.6.1.4.1.99999.1"));
        let (r, s) = run(
            Policy::Require,
            vec![
                Step::Server(leak(notice.clone())),
                Step::Server(leak(response(1, 0, b"", None))),
            ],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(s.remaining(), 0);
        // A notification dressed as the StartTLS answer is not the answer.
        let forged = response(0, 0, b"", Some(START_TLS_OID));
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(leak(forged)), Step::Stall],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Timeout);
        let flood = notice.repeat(MAX_UNSOLICITED + 1);
        let (r, _) = run(Policy::Require, vec![Step::Server(leak(flood))]);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{e}");
        assert!(e.to_string().contains("unsolicited"), "{e}");
    }

    #[test]
    fn wrong_message_id_or_name_is_a_violation() {
        for bad in [
            response(2, 0, b"", None),
            response(1, 0, b"", Some(b"1.2.3")),
        ] {
            let (r, _) = run(Policy::Require, vec![Step::Server(leak(bad))]);
            assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        }
    }

    #[test]
    fn another_pdu_is_a_violation() {
        // A BindResponse ([APPLICATION 1]) where the ExtendedResponse was due.
        let mut body = tlv(TAG_INTEGER, &[1]);
        body.extend(tlv(0x61, &[0x0a, 0x01, 0x00, 0x04, 0x00, 0x04, 0x00]));
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(leak(tlv(TAG_SEQUENCE, &body)))],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation);
        assert!(e.to_string().contains("0x61"), "{e}");
    }

    #[test]
    fn huge_ber_lengths_are_refused_before_reading() {
        let (r, s) = run(
            Policy::Require,
            vec![Step::Server(&[0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02])],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ProtocolViolation);
        assert!(s.consumed() <= 6, "read {} bytes", s.consumed());
        for bad in [
            &[0x30u8, 0x80][..],
            &[0x30, 0x85, 1, 1, 1, 1, 1],
            &[0x31, 0x00],
        ] {
            let (r, _) = run(Policy::Require, vec![Step::Server(leak(bad.to_vec()))]);
            assert_eq!(
                r.unwrap_err().kind(),
                ErrorKind::ProtocolViolation,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn inner_lengths_are_checked() {
        // The ExtendedResponse claims more bytes than the message holds.
        let msg = [0x30, 0x08, 0x02, 0x01, 0x01, 0x78, 0x7f, 0x0a, 0x01, 0x00];
        let (r, _) = run(Policy::Require, vec![Step::Server(leak(msg.to_vec()))]);
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn truncated_message_is_closed() {
        let full = response(1, 0, b"", None);
        let (r, _) = run(
            Policy::Require,
            vec![
                Step::Server(leak(full[..full.len() - 2].to_vec())),
                Step::Eof,
            ],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Closed);
    }

    #[test]
    fn bytes_after_the_response_are_injection() {
        let mut both = response(1, 0, b"", Some(START_TLS_OID));
        both.extend(response(2, 0, b"forged", None));
        let mut s = Script::new(vec![
            Step::Client(leak(start_tls_request())),
            Step::Server(leak(both)),
        ]);
        let after = with_ctx(Policy::Require, |ctx| {
            let mut w = Wire::new(&mut s, Limits::default());
            client_starttls(&mut w, ctx).unwrap();
            w.ensure_nothing_after_go_ahead()
        });
        assert_eq!(after.unwrap_err().kind(), ErrorKind::Injection);
    }

    #[test]
    fn success_is_the_go_ahead() {
        let (r, s) = run(
            Policy::Require,
            vec![Step::Server(leak(response(1, 0, b"", Some(START_TLS_OID))))],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(s.remaining(), 0);
        // Without the optional response name too.
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(leak(response(1, 0, b"", None)))],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
    }

    #[test]
    fn long_form_lengths_round_trip() {
        let big = vec![b'x'; 300];
        let enc = tlv(TAG_OCTET_STRING, &big);
        assert_eq!(&enc[..4], &[0x04, 0x82, 0x01, 0x2c]);
        let mut r = Ber::new(&enc);
        assert_eq!(r.next().unwrap(), (TAG_OCTET_STRING, &big[..]));
        assert!(r.is_empty());
    }

    #[test]
    fn integers() {
        assert_eq!(integer(&[0x01]), Ok(1));
        assert_eq!(integer(&[0xff]), Ok(-1));
        assert_eq!(integer(&[0x00, 0x80]), Ok(128));
        assert!(integer(&[]).is_err());
        assert!(integer(&[0; 9]).is_err());
    }
}
