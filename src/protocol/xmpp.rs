//! XMPP STARTTLS (RFC 6120 §5): both sides of the stream before TLS (client, or initiating
//! server), the new stream and SASL inside TLS, and the stream's close.
//!
//! stream header with `to=` the XMPP domain → `<stream:features>` holding
//! `<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>` → `<starttls/>` → `<proceed/>` → TLS.
//! `<failure/>` and stream errors are refusals; `see-other-host` is never followed before TLS.
//! After TLS the client opens a new stream; [`client_capabilities`] does that and reads the
//! features inside TLS.

use crate::error::{Error, Phase, Result};
use crate::protocol::sasl::{self, AuthOutcome, Login, Mechanism, Secret};
use crate::protocol::{Dialog, DialogContext, PreTls, ServerContext, ServerPreTls};
use crate::wire::xml::{Namespaces, Token, split_name};
use crate::wire::{Deadline, Direction, Wire, escape_controls};

const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Most tokens in the features element (or a stream error) before TLS.
const MAX_TOKENS: usize = 1024;
/// Most bytes of names, attributes and text in one element (features, a stream error) before
/// TLS: the token count alone would allow 1024 tokens of a whole line each.
const MAX_ELEMENT: usize = 64 * 1024;
/// Deepest nesting accepted inside the stream.
const MAX_DEPTH: usize = 16;

/// Client-to-server or server-to-server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Client,
    Server,
}

impl Kind {
    fn namespace(self) -> &'static str {
        match self {
            Kind::Client => "jabber:client",
            Kind::Server => "jabber:server",
        }
    }
}

/// An element read whole: name, namespace, attributes, text, children.
#[derive(Debug, Default)]
struct Element {
    /// The name as written (`prefix:local`), to match its end tag.
    name: String,
    local: String,
    ns: String,
    text: String,
    children: Vec<Element>,
}

/// The stream as read so far: namespace scopes, with the stream element open at depth 1.
struct Stream {
    ns: Namespaces,
}

impl Stream {
    /// The stream a previous step opened: `kind`'s default namespace and the `stream` prefix.
    fn assumed(kind: Kind) -> Stream {
        let mut ns = Namespaces::default();
        ns.push(&[
            ("xmlns".to_owned(), kind.namespace().to_owned()),
            ("xmlns:stream".to_owned(), NS_STREAMS.to_owned()),
        ]);
        Stream { ns }
    }

    /// Reads the opening of the peer's stream: optional declaration, then `<stream:stream>`;
    /// returns the header's attributes too.
    fn open(wire: &mut Wire<'_>, deadline: &Deadline) -> Result<(Stream, Vec<(String, String)>)> {
        let phase = deadline.phase();
        let mut token = wire.read_xml(deadline, false)?;
        // At most one declaration, and a little whitespace, before the header.
        for seen in 0.. {
            let skippable = match &token {
                Token::Declaration => seen == 0,
                Token::Text(t) => t.trim().is_empty() && seen < 4,
                _ => false,
            };
            if !skippable {
                break;
            }
            token = wire.read_xml(deadline, false)?;
        }
        let Token::Start { name, attrs, empty } = token else {
            return Err(Error::violation(phase, "expected an XMPP stream header"));
        };
        let mut ns = Namespaces::default();
        ns.push(&attrs);
        let (prefix, local) = split_name(&name);
        if empty || local != "stream" || ns.resolve(prefix) != Some(NS_STREAMS) {
            return Err(Error::violation_in(
                phase,
                "not an XMPP stream header",
                &name,
            ));
        }
        Ok((Stream { ns }, attrs))
    }

    /// Reads the next element inside the stream, whole and bounded. A close of the stream is
    /// [`Error::Closed`]-like: reported as a refusal with what was said.
    fn element(&mut self, wire: &mut Wire<'_>, deadline: &Deadline) -> Result<Element> {
        let phase = deadline.phase();
        let mut stack: Vec<Element> = Vec::new();
        let mut size = 0usize;
        for _ in 0..MAX_TOKENS {
            let token = wire.read_xml(deadline, !stack.is_empty())?;
            size += token.size();
            if size > MAX_ELEMENT {
                return Err(Error::violation(
                    phase,
                    format!("XML element larger than {MAX_ELEMENT} bytes"),
                ));
            }
            match token {
                Token::Declaration => {
                    return Err(Error::violation(phase, "XML declaration inside the stream"));
                }
                Token::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&t);
                    } else if !t.trim().is_empty() {
                        return Err(Error::violation_in(phase, "text between stanzas", &t));
                    }
                }
                Token::Start { name, attrs, empty } => {
                    if self.ns.depth() >= MAX_DEPTH {
                        return Err(Error::violation(
                            phase,
                            format!("XML nested deeper than {MAX_DEPTH}"),
                        ));
                    }
                    self.ns.push(&attrs);
                    let (prefix, local) = split_name(&name);
                    let el = Element {
                        name: name.clone(),
                        local: local.to_owned(),
                        ns: self.ns.resolve(prefix).unwrap_or_default().to_owned(),
                        ..Element::default()
                    };
                    if empty {
                        self.ns.pop();
                        match stack.last_mut() {
                            Some(parent) => parent.children.push(el),
                            None => return Ok(el),
                        }
                    } else {
                        stack.push(el);
                    }
                }
                Token::End { name } => {
                    let Some(done) = stack.pop() else {
                        // `</stream:stream>`: the server closed the stream.
                        return Err(Error::Refused {
                            phase,
                            reply: format!("the server closed the XMPP stream (</{name}>)"),
                        });
                    };
                    if done.name != name {
                        return Err(Error::violation_in(phase, "mismatched end tag", &name));
                    }
                    self.ns.pop();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(done),
                        None => return Ok(done),
                    }
                }
            }
        }
        Err(Error::violation(
            phase,
            format!("element longer than {MAX_TOKENS} XML tokens"),
        ))
    }
}

/// A stream error as a refusal (`see-other-host` included: it is never followed before TLS).
fn stream_error(el: &Element, phase: Phase) -> Error {
    let condition = el
        .children
        .iter()
        .find(|c| c.ns == NS_STREAM_ERRORS && c.local != "text")
        .map_or("unknown", |c| c.local.as_str());
    let reply = if condition == "see-other-host" {
        "stream error see-other-host (redirects are not followed before TLS)".to_owned()
    } else {
        format!("stream error {condition}")
    };
    Error::Refused { phase, reply }
}

fn is(el: &Element, ns: &str, local: &str) -> bool {
    el.ns == ns && el.local == local
}

/// The features as capability strings: `starttls`, `starttls required`, `mechanisms PLAIN ...`.
fn feature_list(features: &Element) -> Vec<String> {
    features
        .children
        .iter()
        .map(|f| {
            if is(f, NS_TLS, "starttls") {
                if f.children.iter().any(|c| c.local == "required") {
                    "starttls required".to_owned()
                } else {
                    "starttls".to_owned()
                }
            } else if is(f, NS_SASL, "mechanisms") {
                let mechs: Vec<&str> = f
                    .children
                    .iter()
                    .filter(|m| m.local == "mechanism")
                    .map(|m| m.text.trim())
                    .collect();
                // XML allows DEL and C1; a person must not see them raw.
                escape_controls(&format!("mechanisms {}", mechs.join(" "))).into_owned()
            } else if f.ns.is_empty() {
                f.local.clone()
            } else {
                escape_controls(&format!("{} ({})", f.local, f.ns)).into_owned()
            }
        })
        .collect()
}

/// Escapes a value for a single-quoted attribute.
fn attr_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

fn stream_header(kind: Kind, domain: &str) -> String {
    format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{NS_STREAMS}' to='{}' \
         version='1.0'>",
        kind.namespace(),
        attr_escape(domain)
    )
}

/// Whitespace keepalives skipped before one client element, at most (bytes).
const MAX_KEEPALIVE: usize = 1024;

/// Sends a client element, after skipping the whitespace keepalives waiting (RFC 6120 §4.6.1
/// allows them between elements); anything else waiting is refused as unsolicited.
fn send_element(wire: &mut Wire<'_>, bytes: &[u8], deadline: &Deadline) -> Result<()> {
    wire.skip_waiting_whitespace(deadline, MAX_KEEPALIVE)?;
    wire.send_message(bytes, deadline)
}

/// Opens a stream to the domain and reads the server's features.
fn open_and_read_features(
    wire: &mut Wire<'_>,
    ctx: &DialogContext,
    kind: Kind,
    phase: Phase,
) -> Result<(Stream, Element)> {
    let deadline = ctx.deadline(phase);
    let header = stream_header(kind, &ctx.server_name);
    send_element(wire, header.as_bytes(), &deadline)?;
    wire.note(Direction::Sent, header);
    let (mut stream, attrs) = Stream::open(wire, &deadline)?;
    if !attrs
        .iter()
        .any(|(n, v)| n == "version" && v.starts_with("1."))
    {
        // A pre-1.0 server sends no features, hence no STARTTLS.
        return Err(Error::NotOffered {
            reply: Some("stream header without version='1.0' (no stream features)".into()),
        });
    }
    let features = stream.element(wire, &deadline)?;
    if is(&features, NS_STREAMS, "error") {
        return Err(stream_error(&features, phase));
    }
    if !is(&features, NS_STREAMS, "features") {
        return Err(Error::violation_in(
            phase,
            "expected <stream:features>",
            &features.local,
        ));
    }
    Ok((stream, features))
}

pub(crate) fn client_starttls(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    kind: Kind,
) -> Result<PreTls> {
    let mut pre = PreTls::new();
    let (mut stream, features) = open_and_read_features(wire, ctx, kind, Phase::Capabilities)?;
    let caps = feature_list(&features);
    // Decided on the element tree: only the TLS namespace counts, whatever the list shows.
    let offered = features.children.iter().any(|f| is(f, NS_TLS, "starttls"));
    pre.starttls_offered = Some(offered);
    pre.capabilities = Some(caps);
    if !offered {
        let shown = pre.capabilities.as_deref().unwrap_or_default().join(", ");
        return ctx.tls_impossible(pre, Error::NotOffered { reply: Some(shown) });
    }

    let deadline = ctx.deadline(Phase::StartTls);
    let request = format!("<starttls xmlns='{NS_TLS}'/>");
    send_element(wire, request.as_bytes(), &deadline)?;
    wire.note(Direction::Sent, request);
    let answer = stream.element(wire, &deadline)?;
    if is(&answer, NS_TLS, "proceed") {
        return Ok(pre);
    }
    if is(&answer, NS_TLS, "failure") {
        // The server closes the stream after <failure/>: nothing more can be said in plaintext.
        return Err(Error::Refused {
            phase: Phase::StartTls,
            reply: "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".into(),
        });
    }
    if is(&answer, NS_STREAMS, "error") {
        return Err(stream_error(&answer, Phase::StartTls));
    }
    Err(Error::violation_in(
        Phase::StartTls,
        "expected <proceed/> or <failure/>",
        &answer.local,
    ))
}

/// After TLS: opens the new stream (RFC 6120 §5.4.3.3) and reads the features, which are then
/// trusted. The stream stands after `</stream:features>` (the client sends SASL next).
pub(crate) fn client_capabilities(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    kind: Kind,
) -> Result<Vec<String>> {
    let (_, features) = open_and_read_features(wire, ctx, kind, Phase::Capabilities)?;
    Ok(feature_list(&features))
}

// --- server side ---

/// A random stream id (RFC 6120 §4.7.3: unpredictable).
fn stream_id() -> Result<String> {
    let mut bytes = [0u8; 12];
    crate::x509::crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| Error::Config("no secure random source".into()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The server's side: reads the client's stream header, answers with its own and features
/// that require STARTTLS, and answers `<starttls/>` with `<proceed/>`. Anything else before TLS
/// is a policy violation that closes the stream.
pub(crate) fn server_starttls(
    wire: &mut Wire<'_>,
    ctx: &ServerContext<'_>,
    kind: Kind,
) -> Result<ServerPreTls> {
    let deadline = ctx.deadline(Phase::StartTls);
    let (mut stream, attrs) = Stream::open(wire, &deadline)?;
    let attr = |name: &str| {
        attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let pre = ServerPreTls {
        peer_name: attr("to").map(|to| escape_controls(&to).into_owned()),
    };
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='{}' xmlns:stream='{NS_STREAMS}' id='{}' \
         from='{}' version='1.0'><stream:features><starttls xmlns='{NS_TLS}'><required/>\
         </starttls></stream:features>",
        kind.namespace(),
        stream_id()?,
        attr_escape(ctx.hostname)
    );
    wire.send_reply(&header, &deadline)?;
    if attr("xmlns").as_deref() != Some(kind.namespace()) {
        wire.send_reply(&stream_error_reply("invalid-namespace"), &deadline)?;
        return Err(Error::violation(Phase::StartTls, "wrong stream namespace"));
    }
    let request = stream.element(wire, &deadline)?;
    if is(&request, NS_TLS, "starttls") {
        wire.ensure_nothing_after_go_ahead()?;
        wire.send_reply(&format!("<proceed xmlns='{NS_TLS}'/>"), &deadline)?;
        return Ok(pre);
    }
    wire.send_reply(&stream_error_reply("policy-violation"), &deadline)?;
    Err(Error::violation_in(
        Phase::StartTls,
        "stanza before STARTTLS",
        &request.local,
    ))
}

fn stream_error_reply(condition: &str) -> String {
    format!(
        "<stream:error><{condition} xmlns='{NS_STREAM_ERRORS}'/></stream:error></stream:stream>"
    )
}

// --- authentication inside TLS ---

/// SASL PLAIN (RFC 6120 §6) on the stream opened inside TLS by the capability fetch. After
/// success the client restarts the stream again, as the protocol requires.
pub(crate) fn client_authenticate(
    wire: &mut Wire<'_>,
    ctx: &mut DialogContext,
    caps: &[String],
    login: &Login<'_>,
    kind: Kind,
) -> Result<AuthOutcome> {
    let offered = super::listed_after(caps, "mechanisms");
    let Some(mut mechanism) = super::mechanisms::choose(&offered, login) else {
        return Err(super::no_mechanism(caps));
    };
    let deadline = ctx.deadline(Phase::Read);
    sasl_exchange(wire, &deadline, kind, &mut *mechanism)
}

/// Sends a SASL element that carries a secret; the transcript shows `shown`.
fn send_sasl(
    wire: &mut Wire<'_>,
    element: &Secret,
    shown: String,
    deadline: &Deadline,
) -> Result<()> {
    wire.skip_waiting_whitespace(deadline, MAX_KEEPALIVE)?;
    wire.ensure_quiet_for(deadline.phase())?;
    wire.send_raw(element.as_bytes(), deadline)?;
    wire.note(Direction::Sent, shown);
    Ok(())
}

/// A SASL exchange (RFC 6120 §6.4): `<auth mechanism='NAME'>` with the first message, each
/// `<challenge/>` answered with a `<response/>`, until `<success/>` (with the server's last
/// message when it has one) or `<failure/>`. A mechanism that refuses a challenge sends
/// `<abort/>` and fails with its own reason. Runs on the stream opened by the capability fetch.
fn sasl_exchange(
    wire: &mut Wire<'_>,
    deadline: &Deadline,
    kind: Kind,
    mechanism: &mut dyn Mechanism,
) -> Result<AuthOutcome> {
    let name = mechanism.name();
    let phase = deadline.phase();
    let first = sasl::base64_secret(mechanism.initial()?.as_bytes());
    // An empty initial response is sent as `=` (RFC 6120 §6.4.2).
    let ir = if first.as_bytes().is_empty() {
        "="
    } else {
        first.as_str()
    };
    let open = format!("<auth xmlns='{NS_SASL}' mechanism='{name}'>");
    let auth = Secret::concat(&[&open, ir, "</auth>"]);
    send_sasl(wire, &auth, format!("{open}<credentials></auth>"), deadline)?;
    let mut stream = Stream::assumed(kind);
    let data = |el: &Element| match el.text.trim() {
        "" | "=" => Ok(Vec::new()),
        text => sasl::challenge(text, phase),
    };
    for _ in 0..sasl::MAX_CHALLENGES {
        let answer = stream.element(wire, deadline)?;
        if is(&answer, NS_SASL, "success") {
            let last = data(&answer)?;
            mechanism.finish((!last.is_empty()).then_some(&last[..]))?;
            return Ok(AuthOutcome::of(mechanism, "<success/>".into()));
        }
        if is(&answer, NS_SASL, "failure") {
            let condition = answer
                .children
                .iter()
                .find(|c| c.local != "text")
                .map_or("failure", |c| c.local.as_str());
            return Err(sasl::rejected(
                mechanism,
                &format!("<failure><{condition}/></failure>"),
            ));
        }
        if !is(&answer, NS_SASL, "challenge") {
            return Err(Error::violation_in(
                phase,
                "expected <challenge/>, <success/> or <failure/>",
                &answer.local,
            ));
        }
        match data(&answer).and_then(|c| mechanism.answer(&c)) {
            Ok(response) => {
                let response = sasl::base64_secret(response.as_bytes());
                let open = format!("<response xmlns='{NS_SASL}'>");
                let element = Secret::concat(&[&open, response.as_str(), "</response>"]);
                send_sasl(
                    wire,
                    &element,
                    format!("{open}<response></response>"),
                    deadline,
                )?;
            }
            Err(e) => {
                let abort = Secret::concat(&["<abort xmlns='", NS_SASL, "'/>"]);
                send_sasl(
                    wire,
                    &abort,
                    format!("<abort xmlns='{NS_SASL}'/>"),
                    deadline,
                )?;
                stream.element(wire, deadline)?;
                return Err(e);
            }
        }
    }
    Err(sasl::too_many_challenges(phase))
}

/// XMPP client-to-server or server-to-server.
pub(crate) struct Xmpp(pub Kind);

impl Dialog for Xmpp {
    fn client_starttls(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<PreTls> {
        client_starttls(wire, ctx, self.0)
    }

    /// Opens a new stream inside TLS and reads its features.
    fn client_capabilities(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
    ) -> Result<Vec<String>> {
        let features = client_capabilities(wire, ctx, self.0)?;
        ctx.session.xmpp_stream_open = true;
        Ok(features)
    }

    fn has_login(&self) -> bool {
        true
    }

    fn client_authenticate(
        &self,
        wire: &mut Wire<'_>,
        ctx: &mut DialogContext,
        caps: &[String],
        login: &Login<'_>,
    ) -> Result<AuthOutcome> {
        client_authenticate(wire, ctx, caps, login, self.0)
    }

    /// Closes the stream opened inside TLS, if one was.
    fn client_goodbye(&self, wire: &mut Wire<'_>, ctx: &mut DialogContext) -> Result<()> {
        if ctx.session.xmpp_stream_open {
            send_element(wire, b"</stream:stream>", &ctx.deadline(Phase::Close))?;
            wire.note(Direction::Sent, "</stream:stream>".into());
        }
        Ok(())
    }

    fn server_starttls(
        &self,
        wire: &mut Wire<'_>,
        ctx: &ServerContext<'_>,
    ) -> Result<ServerPreTls> {
        server_starttls(wire, ctx, self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Policy;
    use crate::error::ErrorKind;
    use crate::protocol::Outcome;
    use crate::protocol::testing::{self, leak};
    use crate::wire::script::{Script, Step};

    fn header() -> &'static [u8] {
        leak(stream_header(Kind::Client, "server.test"))
    }

    const SERVER_HEADER: &[u8] = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' id='abc' from='server.test' version='1.0'>";
    const FEATURES_TLS: &[u8] = b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>";
    const STARTTLS: &[u8] = b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

    fn run(policy: Policy, after_header: Vec<Step>) -> (Result<PreTls>, Script) {
        let mut steps = vec![Step::Client(header())];
        steps.extend(after_header);
        testing::run(policy, steps, |w, ctx| {
            client_starttls(w, ctx, Kind::Client)
        })
    }

    /// RFC 6120 §4.6.1: whitespace keepalives may come between elements; waiting ones are
    /// skipped before the client speaks. Anything else waiting is still refused, and whitespace
    /// after <proceed/> is still an injection (the connection tests cover that).
    #[test]
    fn whitespace_keepalives_before_starttls_are_skipped() {
        let (r, s) = run(
            Policy::Require,
            vec![
                Step::Server(SERVER_HEADER),
                Step::Server(FEATURES_TLS),
                Step::Server(b" \n \t\r\n"),
                Step::Client(STARTTLS),
                Step::Server(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"),
            ],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn an_element_or_too_much_whitespace_waiting_before_starttls_is_refused() {
        for (waiting, says) in [
            (
                &b" <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"[..],
                "unsolicited",
            ),
            (leak(vec![b' '; MAX_KEEPALIVE + 1]), "whitespace"),
        ] {
            let (r, s) = run(
                Policy::Require,
                vec![
                    Step::Server(SERVER_HEADER),
                    Step::Server(FEATURES_TLS),
                    Step::Server(waiting),
                ],
            );
            let e = r.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ProtocolViolation, "{e}");
            assert!(e.to_string().contains(says), "{e}");
            assert!(
                !s.written_text().contains("starttls"),
                "{}",
                s.written_text()
            );
        }
    }

    #[test]
    fn stripped_starttls_fails_and_sends_nothing_more() {
        let (r, s) = run(
            Policy::Require,
            vec![
                Step::Server(SERVER_HEADER),
                Step::Server(b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism></mechanisms></stream:features>"),
            ],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotOffered);
        assert!(e.to_string().contains("mechanisms PLAIN"), "{e}");
        assert_eq!(s.remaining(), 0);
    }

    #[test]
    fn starttls_in_another_namespace_does_not_count() {
        let (r, _) = run(
            Policy::Require,
            vec![
                Step::Server(SERVER_HEADER),
                Step::Server(b"<stream:features><starttls xmlns='urn:evil'/></stream:features>"),
            ],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::NotOffered);
    }

    #[test]
    fn failure_is_a_refusal() {
        let (r, _) = run(
            Policy::Opportunistic,
            vec![
                Step::Server(SERVER_HEADER),
                Step::Server(FEATURES_TLS),
                Step::Client(STARTTLS),
                Step::Server(b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>"),
            ],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::Refused);
    }

    #[test]
    fn see_other_host_is_not_followed() {
        let (r, _) = run(
            Policy::Require,
            vec![
                Step::Server(SERVER_HEADER),
                Step::Server(b"<stream:error><see-other-host xmlns='urn:ietf:params:xml:ns:xmpp-streams'>evil.example:5222</see-other-host></stream:error>"),
            ],
        );
        let e = r.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Refused);
        assert!(e.to_string().contains("see-other-host"), "{e}");
        assert!(
            !e.to_string().contains("evil.example"),
            "the redirect target is not echoed as advice"
        );
    }

    #[test]
    fn doctype_and_entities_are_refused() {
        for bad in [
            &b"<!DOCTYPE stream:stream [<!ENTITY lol 'lol'>]>"[..],
            b"<stream:features><x>&lol;</x></stream:features>",
        ] {
            let (r, _) = run(
                Policy::Require,
                vec![
                    Step::Server(SERVER_HEADER),
                    Step::Server(testing::leak(bad)),
                ],
            );
            assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        }
    }

    #[test]
    fn deep_nesting_and_floods_are_bounded() {
        let deep = testing::leak(format!("<stream:features>{}", "<a>".repeat(100)));
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(SERVER_HEADER), Step::Server(deep)],
        );
        assert!(r.unwrap_err().to_string().contains("deeper"));
        let wide = testing::leak(format!("<stream:features>{}", "<a/>".repeat(5000)));
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(SERVER_HEADER), Step::Server(wide)],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        let long = testing::leak(format!("<stream:features><a x='{}'/>", "y".repeat(100_000)));
        let (r, s) = run(
            Policy::Require,
            vec![Step::Server(SERVER_HEADER), Step::Server(long)],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        assert!(s.consumed() < 20_000);
    }

    #[test]
    fn not_a_stream_is_a_violation() {
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(b"HTTP/1.1 400 Bad Request\r\n\r\n")],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
        let (r, _) = run(
            Policy::Require,
            vec![Step::Server(b"<stream:stream xmlns:stream='urn:other'>")],
        );
        assert_eq!(r.unwrap_err().kind(), ErrorKind::ProtocolViolation);
    }

    #[test]
    fn proceed_is_the_go_ahead_and_nothing_may_follow() {
        let (r, s) = run(
            Policy::Require,
            vec![
                Step::Server(SERVER_HEADER),
                Step::Server(FEATURES_TLS),
                Step::Client(STARTTLS),
                Step::Server(b"<proceed xmlns=\"urn:ietf:params:xml:ns:xmpp-tls\"/>"),
            ],
        );
        let pre = r.unwrap();
        assert!(matches!(pre.outcome, Outcome::GoAhead));
        assert_eq!(
            pre.capabilities.unwrap(),
            vec!["starttls required", "mechanisms PLAIN"]
        );
        assert_eq!(s.remaining(), 0);

        let mut steps = vec![
            Step::Client(header()),
            Step::Server(SERVER_HEADER),
            Step::Server(FEATURES_TLS),
            Step::Client(STARTTLS),
            Step::Server(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/><stream:features/>"),
        ];
        steps.truncate(5);
        let (after, _) = testing::run(Policy::Require, steps, |w, ctx| {
            client_starttls(w, ctx, Kind::Client).unwrap();
            w.ensure_nothing_after_go_ahead()
        });
        assert_eq!(after.unwrap_err().kind(), ErrorKind::Injection);
    }

    #[test]
    fn prefixed_tls_namespace_counts() {
        let (r, _) = run(
            Policy::Require,
            vec![
                Step::Server(SERVER_HEADER),
                Step::Server(b"<stream:features><tls:starttls xmlns:tls='urn:ietf:params:xml:ns:xmpp-tls'/></stream:features>"),
                Step::Client(STARTTLS),
                Step::Server(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'></proceed>"),
            ],
        );
        assert!(matches!(r.unwrap().outcome, Outcome::GoAhead));
    }

    #[test]
    fn server_to_server_uses_jabber_server() {
        assert!(stream_header(Kind::Server, "a.example").contains("xmlns='jabber:server'"));
        assert!(stream_header(Kind::Client, "x'y").contains("to='x&apos;y'"));
    }
}
