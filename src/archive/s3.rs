//! The S3 calls the archive makes, and nothing more: each request presigned with AWS Signature
//! V4 by `rusty-s3` (which signs, and leaves the sending to us) and sent with `ureq`.
//!
//! Every `x-amz-*` header we send is signed, so a proxy cannot strip the lock from an upload
//! without the server refusing it. Bodies are not signed (presigned requests carry
//! UNSIGNED-PAYLOAD); an upload's integrity comes from `x-amz-checksum-sha256`, which the
//! server checks against what it received.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use base64::Engine;
use rusty_s3::{Bucket, Credentials, Method, UrlStyle};
use url::Url;

use crate::core::segment::{sha256, Hash};
use crate::core::timefmt::parse_utc_ns;

/// How long a presigned request stays valid: it is sent at once.
const SIGNED_FOR_SECS: u64 = 300;
/// A stalled server must not hang an archive run (or verify) forever; a slow one must not cut a
/// large object short. So: a bound on each read and write, none on a whole transfer.
const STALL_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const S3_XMLNS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Where the bucket is and how to address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https://s3.REGION.amazonaws.com` unless given.
    pub url: Option<String>,
    /// Path-style addressing (`ENDPOINT/BUCKET/KEY`), which MinIO, Ceph RGW and LocalStack
    /// expect; virtual-hosted (`BUCKET.ENDPOINT/KEY`) otherwise.
    pub path_style: bool,
    pub region: Option<String>,
}

/// Object Lock retention modes. Only COMPLIANCE keeps an object from everyone, its account's
/// root included, until its date; GOVERNANCE lets a permitted user lift it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Compliance,
    Governance,
}

impl LockMode {
    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "COMPLIANCE",
            LockMode::Governance => "GOVERNANCE",
        }
    }

    fn parse(text: &str) -> Option<LockMode> {
        match text.trim() {
            "COMPLIANCE" => Some(LockMode::Compliance),
            "GOVERNANCE" => Some(LockMode::Governance),
            _ => None,
        }
    }
}

/// What a HEAD of one object version tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub version_id: String,
    pub size: u64,
    pub mode: Option<LockMode>,
    /// Whole seconds (the server's precision), as ns.
    pub retain_until_ns: Option<u64>,
    pub legal_hold: bool,
    /// The `x-amz-meta-*` headers, names without the prefix.
    pub metadata: Vec<(String, String)>,
}

impl ObjectInfo {
    pub fn meta(&self, name: &str) -> Option<&str> {
        self.metadata.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// One entry of ListObjectVersions for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub version_id: String,
    pub latest: bool,
    pub delete_marker: bool,
}

#[derive(Debug)]
pub enum S3Error {
    /// No credentials in the environment or the shared credentials file.
    NoCredentials,
    BadCredentialsFile {
        path: String,
        why: String,
    },
    BadEndpoint(String),
    /// The request did not get an answer (connection refused, TLS, timeout).
    Transport {
        op: &'static str,
        key: String,
        err: Box<ureq::Error>,
    },
    /// The server answered with an error.
    Refused {
        op: &'static str,
        key: String,
        status: u16,
        code: String,
        message: String,
    },
    /// The server answered something this client cannot read.
    BadAnswer {
        op: &'static str,
        key: String,
        why: String,
    },
    Io {
        op: &'static str,
        key: String,
        err: std::io::Error,
    },
}

impl S3Error {
    /// The S3 error code (`AccessDenied`, `NoSuchVersion`...), when the server gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Refused { code, .. } => Some(code),
            _ => None,
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Error::NoCredentials => write!(
                f,
                "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or put a profile in ~/.aws/credentials (AWS_PROFILE picks one)"
            ),
            S3Error::BadCredentialsFile { path, why } => write!(f, "{path}: {why}"),
            S3Error::BadEndpoint(why) => write!(f, "S3 endpoint: {why}"),
            S3Error::Transport { op, key, err } => write!(f, "S3 {op} {key}: {err}"),
            S3Error::Refused { op, key, status, code, message } => {
                write!(f, "S3 {op} {key}: the server refused: {status} {code}")?;
                if !message.is_empty() {
                    write!(f, " ({message})")?;
                }
                Ok(())
            }
            S3Error::BadAnswer { op, key, why } => write!(f, "S3 {op} {key}: unreadable answer: {why}"),
            S3Error::Io { op, key, err } => write!(f, "S3 {op} {key}: {err}"),
        }
    }
}

impl std::error::Error for S3Error {}

pub type S3Result<T> = Result<T, S3Error>;

/// A client for one bucket.
pub struct S3 {
    bucket: Bucket,
    credentials: Credentials,
    agent: ureq::Agent,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3").field("bucket", &self.bucket.name()).field("url", &self.bucket.base_url()).finish()
    }
}

/// A response: its status, headers and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: ureq::Body,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// Credentials as the AWS tools find them: the environment, then the shared credentials file
/// (`AWS_SHARED_CREDENTIALS_FILE` or ~/.aws/credentials) under `AWS_PROFILE` (or `default`).
pub fn credentials() -> S3Result<Credentials> {
    if let Some(found) = Credentials::from_env() {
        return Ok(found);
    }
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::Path::new(&home).join(".aws/credentials"),
            None => return Err(S3Error::NoCredentials),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(S3Error::NoCredentials),
        Err(e) => return Err(S3Error::BadCredentialsFile { path: path.display().to_string(), why: e.to_string() }),
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let values = ini_section(&text, &profile);
    let get = |name: &str| values.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(key), Some(secret)) => Ok(match get("aws_session_token") {
            Some(token) => Credentials::new_with_token(key, secret, token),
            None => Credentials::new(key, secret),
        }),
        _ => Err(S3Error::BadCredentialsFile {
            path: path.display().to_string(),
            why: format!("profile [{profile}] has no aws_access_key_id and aws_secret_access_key"),
        }),
    }
}

/// The `key = value` lines of `[section]` in an INI file.
fn ini_section(text: &str, section: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
    }
    out
}

/// The region: the option, else `AWS_REGION`, `AWS_DEFAULT_REGION`, else us-east-1.
fn region(endpoint: &Endpoint) -> String {
    endpoint
        .region
        .clone()
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok().filter(|r| !r.is_empty()))
        .unwrap_or_else(|| "us-east-1".into())
}

impl S3 {
    pub fn new(bucket: &str, endpoint: &Endpoint, credentials: Credentials) -> S3Result<S3> {
        let region = region(endpoint);
        let url = endpoint.url.clone().unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let url = Url::parse(&url).map_err(|e| S3Error::BadEndpoint(format!("`{url}`: {e}")))?;
        let style = if endpoint.path_style { UrlStyle::Path } else { UrlStyle::VirtualHost };
        let bucket = Bucket::new(url, style, bucket.to_string(), region)
            .map_err(|e| S3Error::BadEndpoint(format!("bucket `{bucket}`: {e}")))?;
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::NativeTls)
            // The system's CA store, so an on-premises store behind an internal CA works.
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_per_read(Some(STALL_TIMEOUT))
            .timeout_per_write(Some(STALL_TIMEOUT))
            .tls_config(tls)
            .build()
            .into();
        Ok(S3 { bucket, credentials, agent })
    }

    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    /// A presigned URL for `method` on `key` (None: the bucket), with these query parameters and
    /// signed headers (lowercase names).
    fn url(&self, method: Method, key: Option<&str>, query: &[(&str, &str)], headers: &[(&str, &str)]) -> Url {
        let url = match key {
            Some(key) => self.bucket.object_url(key),
            None => self.bucket.base_url().clone(),
        };
        let mut query = query.to_vec();
        query.sort();
        let mut headers = headers.to_vec();
        headers.sort();
        rusty_s3::signing::sign(
            &jiff::Timestamp::now(),
            method,
            url,
            self.credentials.key(),
            self.credentials.secret(),
            self.credentials.token(),
            self.bucket.region(),
            SIGNED_FOR_SECS,
            query.iter().copied(),
            headers.iter().copied(),
        )
    }

    fn send(
        &self,
        op: &'static str,
        method: Method,
        key: Option<&str>,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Option<(&mut dyn Read, u64)>,
    ) -> S3Result<Answer> {
        let url = self.url(method, key, query, headers);
        let what = key.unwrap_or("").to_string();
        let transport = |err| S3Error::Transport { op, key: what.clone(), err: Box::new(err) };
        let response = match method {
            Method::Get | Method::Head | Method::Delete => {
                let mut request = match method {
                    Method::Get => self.agent.get(url.as_str()),
                    Method::Head => self.agent.head(url.as_str()),
                    _ => self.agent.delete(url.as_str()),
                };
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                request.call()
            }
            Method::Put | Method::Post => {
                let mut request =
                    if method == Method::Put { self.agent.put(url.as_str()) } else { self.agent.post(url.as_str()) };
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                match body {
                    Some((reader, len)) => {
                        request.header("content-length", len.to_string()).send(ureq::SendBody::from_reader(reader))
                    }
                    None => request.header("content-length", "0").send_empty(),
                }
            }
        }
        .map_err(transport)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let answer = Answer { status, headers, body: response.into_body() };
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        Err(refusal(op, &what, answer))
    }

    /// Upload `len` bytes from `body` under `key`, locked in `mode` until `retain_until_ns`, with
    /// a legal hold if `hold`; `sha256` of the bytes is checked by the server. The new
    /// version's id.
    #[allow(clippy::too_many_arguments)]
    pub fn put_locked(
        &self,
        key: &str,
        body: &mut dyn Read,
        len: u64,
        sha256: &Hash,
        mode: LockMode,
        retain_until_ns: u64,
        hold: bool,
        metadata: &[(&str, &str)],
    ) -> S3Result<String> {
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256);
        let until = s3_date(retain_until_ns);
        let meta: Vec<(String, &str)> = metadata.iter().map(|(k, v)| (format!("x-amz-meta-{k}"), *v)).collect();
        let mut headers = vec![
            ("x-amz-checksum-sha256", checksum.as_str()),
            ("x-amz-sdk-checksum-algorithm", "SHA256"),
            ("x-amz-object-lock-mode", mode.as_str()),
            ("x-amz-object-lock-retain-until-date", until.as_str()),
            ("x-amz-object-lock-legal-hold", if hold { "ON" } else { "OFF" }),
        ];
        headers.extend(meta.iter().map(|(k, v)| (k.as_str(), *v)));
        let answer = self.send("PutObject", Method::Put, Some(key), &[], &headers, Some((body, len)))?;
        answer.header("x-amz-version-id").map(str::to_string).ok_or_else(|| S3Error::BadAnswer {
            op: "PutObject",
            key: key.into(),
            why: "no x-amz-version-id: is versioning (Object Lock) enabled on the bucket?".into(),
        })
    }

    /// HEAD of one version (None: the newest); Ok(None) when there is no such object or version.
    pub fn head(&self, key: &str, version: Option<&str>) -> S3Result<Option<ObjectInfo>> {
        let query: Vec<(&str, &str)> = version.map(|v| ("versionId", v)).into_iter().collect();
        let answer = match self.send("HeadObject", Method::Head, Some(key), &query, &[], None) {
            Ok(a) => a,
            // HEAD answers carry no body, so no error code: the status is all there is.
            Err(S3Error::Refused { status: 404, .. }) => return Ok(None),
            // A delete marker as the newest version (405 with a version id given).
            Err(S3Error::Refused { status: 405, .. }) if version.is_none() => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |why: String| S3Error::BadAnswer { op: "HeadObject", key: key.into(), why };
        let version_id = answer.header("x-amz-version-id").unwrap_or("null").to_string();
        let size = answer
            .header("content-length")
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| bad("no Content-Length".into()))?;
        let mode = answer.header("x-amz-object-lock-mode").and_then(LockMode::parse);
        let retain_until_ns = match answer.header("x-amz-object-lock-retain-until-date") {
            Some(date) => Some(parse_s3_date(date).ok_or_else(|| bad(format!("retain-until date {date:?}")))?),
            None => None,
        };
        let legal_hold = answer.header("x-amz-object-lock-legal-hold").is_some_and(|v| v.trim() == "ON");
        let metadata = answer
            .headers
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("x-amz-meta-").map(|name| (name.to_string(), v.clone())))
            .collect();
        Ok(Some(ObjectInfo { version_id, size, mode, retain_until_ns, legal_hold, metadata }))
    }

    /// The bytes of one version, as a stream; Ok(None) when it does not exist.
    pub fn get(&self, key: &str, version: &str) -> S3Result<Option<impl Read>> {
        match self.send("GetObject", Method::Get, Some(key), &[("versionId", version)], &[], None) {
            Ok(answer) => Ok(Some(answer.body.into_reader())),
            Err(S3Error::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every version and delete marker of exactly `key`, newest first.
    pub fn versions(&self, key: &str) -> S3Result<Vec<Version>> {
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            let mut query = vec![("versions", ""), ("prefix", key)];
            if let Some((k, v)) = &marker {
                query.push(("key-marker", k));
                query.push(("version-id-marker", v));
            }
            let xml = self
                .send("ListObjectVersions", Method::Get, None, &query, &[], None)?
                .text("ListObjectVersions", key)?;
            for (tag, entry) in children(&xml, &["Version", "DeleteMarker"]) {
                if xml_text(entry, "Key").as_deref() != Some(key) {
                    continue;
                }
                out.push(Version {
                    version_id: xml_text(entry, "VersionId").unwrap_or_default(),
                    latest: xml_text(entry, "IsLatest").as_deref() == Some("true"),
                    delete_marker: tag == "DeleteMarker",
                });
            }
            if xml_text(&xml, "IsTruncated").as_deref() != Some("true") {
                return Ok(out);
            }
            match (xml_text(&xml, "NextKeyMarker"), xml_text(&xml, "NextVersionIdMarker")) {
                (Some(k), Some(v)) => marker = Some((k, v)),
                _ => return Ok(out),
            }
        }
    }

    /// Set one version's retention (S3 itself refuses to shorten a COMPLIANCE one).
    pub fn put_retention(&self, key: &str, version: &str, mode: LockMode, retain_until_ns: u64) -> S3Result<()> {
        let body = format!(
            "<Retention xmlns=\"{S3_XMLNS}\"><Mode>{}</Mode><RetainUntilDate>{}</RetainUntilDate></Retention>",
            mode.as_str(),
            s3_date(retain_until_ns)
        );
        self.put_config("PutObjectRetention", key, version, "retention", &body)
    }

    pub fn put_legal_hold(&self, key: &str, version: &str, on: bool) -> S3Result<()> {
        let body =
            format!("<LegalHold xmlns=\"{S3_XMLNS}\"><Status>{}</Status></LegalHold>", if on { "ON" } else { "OFF" });
        self.put_config("PutObjectLegalHold", key, version, "legal-hold", &body)
    }

    fn put_config(&self, op: &'static str, key: &str, version: &str, what: &str, body: &str) -> S3Result<()> {
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256(body.as_bytes()));
        // Unsigned (signing it would gain nothing), but without it some servers read no XML.
        let mut request_headers = vec![("content-type", "application/xml")];
        let headers = [("x-amz-checksum-sha256", checksum.as_str()), ("x-amz-sdk-checksum-algorithm", "SHA256")];
        request_headers.extend(headers);
        let mut bytes = body.as_bytes();
        let len = bytes.len() as u64;
        self.send(
            op,
            Method::Put,
            Some(key),
            &[(what, ""), ("versionId", version)],
            &request_headers,
            Some((&mut bytes, len)),
        )?;
        Ok(())
    }

    /// Whether the bucket has Object Lock enabled (and so versioning, which locks need).
    pub fn object_lock_enabled(&self) -> S3Result<bool> {
        match self.send("GetObjectLockConfiguration", Method::Get, None, &[("object-lock", "")], &[], None) {
            Ok(answer) => {
                let xml = answer.text("GetObjectLockConfiguration", "")?;
                Ok(xml_text(&xml, "ObjectLockEnabled").as_deref() == Some("Enabled"))
            }
            Err(e) if e.code() == Some("ObjectLockConfigurationNotFoundError") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Create the bucket, with Object Lock enabled if `object_lock` (the tests make theirs so).
    pub fn create_bucket(&self, object_lock: bool) -> S3Result<()> {
        let headers: Vec<(&str, &str)> =
            if object_lock { vec![("x-amz-bucket-object-lock-enabled", "true")] } else { Vec::new() };
        self.send("CreateBucket", Method::Put, None, &[], &headers, None).map(|_| ())
    }

    /// Delete a version (or, without one, put a delete marker on top), optionally bypassing a
    /// GOVERNANCE lock: what an attacker or a careless admin would try.
    pub fn delete(&self, key: &str, version: Option<&str>, bypass_governance: bool) -> S3Result<()> {
        let query: Vec<(&str, &str)> = version.map(|v| ("versionId", v)).into_iter().collect();
        let headers: Vec<(&str, &str)> =
            if bypass_governance { vec![("x-amz-bypass-governance-retention", "true")] } else { Vec::new() };
        self.send("DeleteObject", Method::Delete, Some(key), &query, &headers, None).map(|_| ())
    }

    /// A plain PUT with no lock (what an overwrite attempt looks like). Its version id.
    pub fn put_plain(&self, key: &str, bytes: &[u8]) -> S3Result<String> {
        let checksum = base64::engine::general_purpose::STANDARD.encode(sha256(bytes));
        let headers = [("x-amz-checksum-sha256", checksum.as_str()), ("x-amz-sdk-checksum-algorithm", "SHA256")];
        let mut body = bytes;
        let answer =
            self.send("PutObject", Method::Put, Some(key), &[], &headers, Some((&mut body, bytes.len() as u64)))?;
        Ok(answer.header("x-amz-version-id").unwrap_or("null").to_string())
    }
}

impl Answer {
    fn text(self, op: &'static str, key: &str) -> S3Result<String> {
        let mut body = String::new();
        self.body.into_reader().take(16 << 20).read_to_string(&mut body).map_err(|err| S3Error::Io {
            op,
            key: key.into(),
            err,
        })?;
        Ok(body)
    }
}

/// The S3 error an answer carries (`<Error><Code>..</Code><Message>..</Message></Error>`).
fn refusal(op: &'static str, key: &str, answer: Answer) -> S3Error {
    let status = answer.status;
    let xml = answer.text(op, key).unwrap_or_default();
    // HEAD answers carry no body, so no code: the status is all there is.
    let code = xml_text(&xml, "Code").unwrap_or_else(|| "(no error code)".into());
    let message = xml_text(&xml, "Message").unwrap_or_default();
    S3Error::Refused { op, key: key.into(), status, code, message }
}

/// `ns` rounded up to the whole second, as S3 keeps a retain-until date.
pub fn s3_date_ns(ns: u64) -> u64 {
    ns.div_ceil(1_000_000_000).saturating_mul(1_000_000_000)
}

/// ns since the epoch as S3 writes dates (ISO 8601, UTC, milliseconds), rounded up to the whole
/// second: a lock never ends before the time it is meant to cover.
pub fn s3_date(ns: u64) -> String {
    let text = crate::core::timefmt::rfc3339_ns(s3_date_ns(ns));
    // rfc3339_ns writes nine fraction digits; S3 wants three.
    match text.split_once('.') {
        Some((whole, _)) => format!("{whole}.000Z"),
        None => text,
    }
}

/// An S3 date (`2027-01-31T12:00:00.000Z`, or with an offset of `+00:00`) as ns, whole seconds.
pub fn parse_s3_date(text: &str) -> Option<u64> {
    let text = text.trim().trim_end_matches('Z').trim_end_matches("+00:00");
    let whole = text.split('.').next()?;
    parse_utc_ns(whole).ok()
}

/// The inner text of the first `<tag>` in `xml`, entities decoded.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(unescape(&xml[start..end]))
}

/// Each `<tag>...</tag>` element for any of `tags`, in document order, with its tag.
fn children<'a>(xml: &'a str, tags: &[&'static str]) -> Vec<(&'static str, &'a str)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let next = tags
            .iter()
            .filter_map(|tag| xml[at..].find(&format!("<{tag}>")).map(|i| (at + i, *tag)))
            .min_by_key(|(i, _)| *i);
        let Some((start, tag)) = next else { return out };
        let body = start + tag.len() + 2;
        let Some(len) = xml[body..].find(&format!("</{tag}>")) else { return out };
        out.push((tag, &xml[body..body + len]));
        at = body + len;
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_up_to_the_second_and_read_back() {
        assert_eq!(s3_date(1_000_000_000), "1970-01-01T00:00:01.000Z");
        assert_eq!(s3_date(1_000_000_001), "1970-01-01T00:00:02.000Z");
        assert_eq!(parse_s3_date("1970-01-01T00:00:02.000Z"), Some(2_000_000_000));
        assert_eq!(parse_s3_date("2030-01-01T00:00:00+00:00"), parse_s3_date("2030-01-01T00:00:00Z"));
        assert_eq!(parse_s3_date("yesterday"), None);
    }

    #[test]
    fn xml_fields_and_repeated_elements_are_read() {
        let xml = "<R><IsTruncated>false</IsTruncated><Version><Key>a&amp;b</Key><VersionId>1</VersionId><IsLatest>false</IsLatest></Version><DeleteMarker><Key>a&amp;b</Key><VersionId>2</VersionId><IsLatest>true</IsLatest></DeleteMarker></R>";
        let found = children(xml, &["Version", "DeleteMarker"]);
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].0, "DeleteMarker");
        assert_eq!(xml_text(found[0].1, "Key").as_deref(), Some("a&b"));
        assert_eq!(xml_text(xml, "Code"), None);
    }

    #[test]
    fn a_credentials_file_profile_is_found() {
        let text =
            "[default]\naws_access_key_id = A\n\n[prod]\n# comment\naws_access_key_id=B\naws_secret_access_key = s\n";
        assert_eq!(
            ini_section(text, "prod"),
            vec![("aws_access_key_id".into(), "B".into()), ("aws_secret_access_key".into(), "s".into())]
        );
        assert_eq!(ini_section(text, "none"), vec![]);
    }
}
