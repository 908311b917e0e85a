//! `wic-tna`: the operator's command-line tool.
//! Check a configuration, verify a header value, mint a token, bar/unbar an
//! issuer and ask for a reload through the configuration's state file.

use std::path::PathBuf;
use std::process::ExitCode;
use wic_tna::config::Issuer;
use wic_tna::context::{now, Context, Outcome, Request};
use wic_tna::keys::Alg;
use wic_tna::mint::{mint, MintRequest};
use wic_tna::Config;

const USAGE: &str = "\
wic-tna: WebRTC IMS Client token check (Trusted Node Authentication)

usage:
  wic-tna check-config <config.toml>
  wic-tna verify --config <file> --authorization <value> [--to <uri>] [--expires <s>] [--now <unix>] [--binding <b>]
                 [--origin <url>]
  wic-tna scscf-check --config <file> --authorization <value> --source <ip> [--allowed <a,b>]
  wic-tna mint --key <file> --alg <alg> --iss <iss> --impi <impi> --impu <uri> [--impu <uri>...]
               [--kid <kid>] [--aud <aud>] [--scope <scope>] [--sub <sub>] [--jti <jti>]
               [--lifetime <s>] [--iat <unix>] [--iat-offset <s>] [--nbf-offset <s>] [--typ <typ>]
  wic-tna bar --config <file> <iss>       bar an issuer for every process sharing the state_file
  wic-tna unbar --config <file> <iss>     lift a run-time barring
  wic-tna reload --config <file>          check the file, then have every process re-read it
  wic-tna stats --config <file>           counters per issuer and outcome (JSON)
  wic-tna refresh --config <file> [--every <ms>]
                                          background work (jwks_url fetches, ...) for the state_file's processes
  wic-tna help [command]

Exit status: 0 success (verify: accepted), 1 rejected or failed, 2 usage error.
";

fn help_for(cmd: &str) -> &'static str {
    match cmd {
        "check-config" => "wic-tna check-config <config.toml>\n  Load the configuration and every key; print a summary, or the error with file, line and field.\n  Warnings (standard error, exit status still 0): an issuer whose impi_patterns or impu_patterns is\n  empty, which no token can pass.\n",
        "verify" => "wic-tna verify --config <file> --authorization <value> [--to <uri>] [--expires <s>] [--now <unix>] [--binding <b>]\n               [--origin <url>]\n  Verify an Authorization header value as the proxy would; print the decision, the identities,\n  the TNA header, or the SIP status, reason and WWW-Authenticate challenge. Exit 0 when accepted.\n  --to: the REGISTER's To (without it the To check is skipped, and a line on standard error says so).\n  --expires: the expiry asked for (0: a de-registration; none: a registration).\n  --binding: the request's replay binding (connection or source, e.g. udp:192.0.2.1:5060), needed\n  where [replay] is enabled; it is recorded in the shared replay table like a proxy's request.\n  --origin: the WebSocket handshake's Origin (the token's issuer must list it in its origins).\n",
        "scscf-check" => "wic-tna scscf-check --config <file> --authorization <value> --source <ip> [--allowed <a,b>]\n  The S-CSCF side check of a received TNA header.\n",
        "mint" => "wic-tna mint --key <private key PEM or HMAC secret file> --alg <HS256|RS256|PS256|ES256|ES384|EdDSA|...>\n  --iss <iss> --impi <impi> --impu <uri> [--impu <uri>...] [--kid <kid>] [--aud <aud, default ims.example.net>]\n  [--scope <scope, default webrtc-ims-client-access-to-ims>] [--sub <sub>] [--jti <jti>]\n  [--lifetime <s, default 3600>] [--iat <unix, default now>] [--iat-offset <s>] [--nbf-offset <s>] [--typ <typ, default at+jwt>]\n  Print a signed access token (for demos and tests).\n",
        "bar" | "unbar" => "wic-tna bar|unbar --config <file> <iss>\n  Bar or unbar one issuer at run time, through the configuration's state_file (needs state_file).\n",
        "reload" => "wic-tna reload --config <file>\n  Check the configuration; if it loads, every process sharing the state_file re-reads it.\n",
        "stats" => "wic-tna stats --config <file>\n  Print the counters per issuer and outcome, shared by every process using the state_file.\n",
        "refresh" => "wic-tna refresh --config <file> [--every <ms>]\n  The library's background work (fetching jwks_url key sets and discovered metadata) for every\n  process sharing the configuration's state_file: once, or with --every (100..60000 ms) in a loop\n  until killed, e.g. as a service beside OpenSIPS or any proxy without a refresher process of its\n  own. Run one per state_file. Without a state_file, only once: the results go to cache_dir,\n  which the proxy adopts at its next start (--every is refused). Messages go to stderr.\n",
        _ => USAGE,
    }
}

struct Args {
    named: Vec<(String, String)>,
    positional: Vec<String>,
}

impl Args {
    fn parse(v: &[String]) -> Result<Args, String> {
        let mut named = Vec::new();
        let mut positional = Vec::new();
        let mut i = 0;
        while i < v.len() {
            if let Some(name) = v[i].strip_prefix("--") {
                if name == "help" {
                    return Err("help".into());
                }
                let val = v
                    .get(i + 1)
                    .ok_or_else(|| format!("--{name} needs a value"))?;
                named.push((name.to_owned(), val.clone()));
                i += 2;
            } else {
                positional.push(v[i].clone());
                i += 1;
            }
        }
        Ok(Args { named, positional })
    }
    fn get(&self, n: &str) -> Option<&str> {
        self.named
            .iter()
            .rev()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    }
    fn all(&self, n: &str) -> Vec<String> {
        self.named
            .iter()
            .filter(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn req(&self, n: &str) -> Result<&str, String> {
        self.get(n).ok_or_else(|| format!("--{n} is required"))
    }
    fn num(&self, n: &str, default: i64) -> Result<i64, String> {
        match self.get(n) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{n}: {v:?} is not a whole number")),
        }
    }
    fn check(&self, allowed: &[&str]) -> Result<(), String> {
        for (k, _) in &self.named {
            if !allowed.contains(&k.as_str()) {
                return Err(format!("unknown option --{k}"));
            }
        }
        Ok(())
    }
}

fn context(a: &Args) -> Result<Context, String> {
    let p = a.req("config")?;
    Context::new(&PathBuf::from(p), None).map_err(|e| e.to_string())
}

fn context_with_state(a: &Args) -> Result<Context, String> {
    let c = context(a)?;
    if c.config().state_file.is_none() {
        return Err("the configuration has no state_file: run-time changes could not reach the proxy's processes".into());
    }
    Ok(c)
}

/// Run the command `cmd`: `Ok(true)` success, `Ok(false)` rejected.
fn run(cmd: &str, a: &Args) -> Result<bool, String> {
    match cmd {
        "check-config" => check_config(a),
        "verify" => verify(a),
        "scscf-check" => scscf_check(a),
        "mint" => mint_token(a),
        "bar" | "unbar" => bar(a, cmd == "bar"),
        "reload" => reload(a),
        "refresh" => refresh(a),
        "stats" => stats(a),
        _ => Err(format!("unknown command {cmd:?}")),
    }
}

/// `check-config`: load the configuration and every key, print a summary.
fn check_config(a: &Args) -> Result<bool, String> {
    a.check(&[])?;
    let path = a.positional.first().ok_or("give the configuration file")?;
    let cfg = Config::load(&PathBuf::from(path)).map_err(|e| e.to_string())?;
    println!("{path}: OK");
    warn_empty_pools(path, &cfg);
    print_summary(&cfg);
    Ok(true)
}

/// `verify`: an Authorization value checked as the proxy would.
fn verify(a: &Args) -> Result<bool, String> {
    a.check(&[
        "config",
        "authorization",
        "to",
        "expires",
        "now",
        "binding",
        "origin",
    ])?;
    let c = context(a)?;
    let t = a.num("now", now())?;
    let exp = a.get("expires").map(|_| a.num("expires", 0)).transpose()?;
    let auth = a.req("authorization")?;
    if a.get("to").is_none() {
        eprintln!("wic-tna verify: no --to given: the To check (the To IMPU one of the token's) was skipped");
    }
    let o = c.verify_request(
        &Request {
            authorization: Some(auth.as_bytes()),
            to: a.get("to").map(str::as_bytes),
            requested_expires: exp,
            binding: a.get("binding").map(str::as_bytes),
            origin: a.get("origin").map(str::as_bytes),
        },
        t,
    );
    Ok(print_outcome(o))
}

/// `scscf-check`: the S-CSCF side check of a received TNA header.
fn scscf_check(a: &Args) -> Result<bool, String> {
    a.check(&["config", "authorization", "source", "allowed"])?;
    let c = context(a)?;
    let o = c.scscf_check(
        a.req("authorization")?.as_bytes(),
        a.req("source")?,
        a.get("allowed"),
    );
    println!("{}", if o.accepted() { "accepted" } else { "rejected" });
    println!("status: {}", o.sip_status);
    println!("reason: {}", o.reason);
    if let Some(i) = o.impi() {
        println!("impi: {i}");
    }
    if let Some(i) = o.iss() {
        println!("authorization-entity: {i}");
    }
    Ok(o.accepted())
}

/// `mint`: a signed access token (demos, tests).
fn mint_token(a: &Args) -> Result<bool, String> {
    a.check(&[
        "key",
        "alg",
        "iss",
        "impi",
        "impu",
        "kid",
        "aud",
        "scope",
        "sub",
        "jti",
        "lifetime",
        "iat",
        "iat-offset",
        "nbf-offset",
        "typ",
    ])?;
    let alg_name = a.req("alg")?;
    let alg =
        Alg::from_name(alg_name).ok_or_else(|| format!("--alg: {alg_name:?} is not supported"))?;
    let key_path = a.req("key")?;
    let mut key = std::fs::read(key_path).map_err(|e| format!("--key {key_path}: {e}"))?;
    if alg.family() == wic_tna::keys::Family::Hmac {
        while matches!(key.last(), Some(b'\n' | b'\r' | b' ' | b'\t')) {
            key.pop();
        }
    }
    let impus = a.all("impu");
    if impus.is_empty() {
        return Err("--impu is required".into());
    }
    let iat = a.num("iat", now())? + a.num("iat-offset", 0)?;
    let req = MintRequest {
        alg,
        kid: a.get("kid").map(str::to_owned),
        typ: a.get("typ").unwrap_or("at+jwt").to_owned(),
        iss: a.req("iss")?.to_owned(),
        aud: a.get("aud").unwrap_or("ims.example.net").to_owned(),
        scope: a
            .get("scope")
            .unwrap_or("webrtc-ims-client-access-to-ims")
            .to_owned(),
        impi: a.req("impi")?.to_owned(),
        impus,
        sub: a.get("sub").map(str::to_owned),
        jti: a.get("jti").map(str::to_owned),
        iat,
        nbf: a
            .get("nbf-offset")
            .map(|_| a.num("nbf-offset", 0))
            .transpose()?
            .map(|o| now() + o),
        exp: iat + a.num("lifetime", 3600)?,
    };
    println!(
        "{}",
        mint(&req, &key).map_err(|e| format!("--key {key_path}: {e}"))?
    );
    Ok(true)
}

/// `bar` / `unbar` (`bar`: which): an issuer, through the state file.
fn bar(a: &Args, bar: bool) -> Result<bool, String> {
    a.check(&["config"])?;
    let iss = a.positional.first().ok_or("give the issuer")?;
    let c = context_with_state(a)?;
    c.set_barred(iss, bar)?;
    println!("{iss}: {}", if bar { "barred" } else { "unbarred" });
    Ok(true)
}

/// `reload`: check the file, then have every process re-read it.
fn reload(a: &Args) -> Result<bool, String> {
    a.check(&["config"])?;
    let c = context_with_state(a)?;
    c.reload()
        .map_err(|e| format!("reload refused, the previous configuration stays: {e}"))?;
    println!("reload requested (generation {})", c.shared().reload_gen());
    Ok(true)
}

/// `refresh`: the background work, once or every `--every` ms.
fn refresh(a: &Args) -> Result<bool, String> {
    a.check(&["config", "every"])?;
    let every = a.get("every").map(|_| a.num("every", 0)).transpose()?;
    if let Some(ms) = every {
        if !(100..=60_000).contains(&ms) {
            return Err(format!("--every: {ms} ms is not within 100..60000"));
        }
    }
    log_to_stderr();
    let c = context(a)?;
    if c.config().state_file.is_none() {
        // Without a state_file no running process shares this one's
        // state: a loop would fetch for nobody. Once is still useful: it
        // fills cache_dir, which the proxy adopts at its next start.
        if every.is_some() {
            return Err("--every needs the configuration's state_file: without one, no running process would see what this refresher fetches (the Kamailio module's own refresher process keeps its workers current)".into());
        }
        eprintln!("wic-tna refresh: note: the configuration has no state_file: the key sets and metadata go to cache_dir (adopted at the proxy's next start); running processes are not told");
    }
    loop {
        let r = c.tick(now());
        match every {
            None => return Ok(!r.failed),
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms as u64)),
        }
    }
}

/// `stats`: the shared counters (JSON).
fn stats(a: &Args) -> Result<bool, String> {
    a.check(&["config"])?;
    let c = context(a)?;
    println!("{}", c.stats_json());
    Ok(true)
}

/// check-config's warnings (standard error): an issuer whose identity pool
/// is empty, which no token can pass.
fn warn_empty_pools(path: &str, cfg: &Config) {
    for (n, i) in cfg.issuers.iter().enumerate() {
        for (field, empty) in [
            ("impi_patterns", i.impi_pool.is_empty()),
            ("impu_patterns", i.impu_pool.is_empty()),
        ] {
            if empty {
                eprintln!("wic-tna check-config: warning: {path}: issuer[{n}] ({}): {field} is empty: no token of this issuer can be accepted", i.iss);
            }
        }
    }
}

/// check-config's summary: the top-level settings, then each issuer.
fn print_summary(cfg: &Config) {
    println!(
        "  home realm {}, audience {}, scope {}",
        cfg.home_realm, cfg.audience, cfg.required_scope
    );
    for i in &cfg.issuers {
        print_issuer(i);
    }
}

/// One issuer of check-config's summary: keys, pools, endpoints.
fn print_issuer(i: &Issuer) {
    let algs: Vec<String> = i
        .keys
        .iter()
        .map(|k| format!("{}:{}", k.kid.as_deref().unwrap_or("-"), k.alg))
        .collect();
    println!(
        "  issuer {}{}: {} key bindings [{}], {} IMPI / {} IMPU patterns, {} origins",
        i.iss,
        if i.barred { " (barred)" } else { "" },
        i.keys.len(),
        algs.join(" "),
        i.impi_pool.len(),
        i.impu_pool.len(),
        i.origins.len()
    );
    if let Some(r) = &i.remote_jwks {
        let algs: Vec<&str> = r.algs.iter().map(|a| a.name()).collect();
        println!(
            "    jwks_url {} [{}], refresh {}..{} s, max stale {} s, cache {}",
            url_text(r.url.as_ref(), "jwks_uri"),
            algs.join(" "),
            r.min_refresh,
            r.max_refresh,
            r.max_stale,
            r.cache_file.display()
        );
    }
    if let Some(x) = &i.introspection {
        println!(
            "    introspection {} as {}, timeout {} ms, prefix {}",
            url_text(x.url.as_ref(), "introspection_endpoint"),
            x.client_id,
            x.timeout.as_millis(),
            x.token_prefix.as_deref().unwrap_or("(none)")
        );
    }
    if let Some(d) = &i.discovery {
        let urls: Vec<String> = d.urls.iter().map(|u| u.to_string()).collect();
        println!(
            "    metadata from {}, cache {}",
            urls.join(" then "),
            d.cache_file.display()
        );
    }
}

/// An endpoint as `check-config` shows it (`metadata`: the member of the
/// issuer's metadata it comes from when the configuration gives none).
fn url_text(u: Option<&wic_tna::url::Url>, metadata: &str) -> String {
    match u {
        Some(u) => format!(
            "{}://{}:{}{}",
            if u.tls { "https" } else { "http" },
            u.host,
            u.port,
            u.path
        ),
        None => format!("(the metadata's {metadata})"),
    }
}

/// verify's output: the identities and the TNA header when accepted, else
/// the status, reason and challenge; whether it was accepted.
fn print_outcome(o: Outcome) -> bool {
    if let Some(v) = &o.verified {
        println!("accepted");
        println!("issuer: {}", v.iss);
        println!("impi: {}", v.impi());
        for u in v.impus() {
            println!("impu: {u}");
        }
        if let Some(s) = v.sub() {
            println!("subject: {s}");
        }
        println!("scope: {}", v.scope());
        println!("expires_at: {}", v.exp);
        println!("seconds_left: {}", o.seconds_left);
        println!("granted_expires: {}", o.granted_expires);
        println!("Authorization: {}", o.tna_header.unwrap_or_default());
        true
    } else {
        println!("rejected");
        println!("status: {}", o.sip_status);
        println!("reason: {}", o.reason);
        if let Some(w) = o.www_authenticate {
            println!("WWW-Authenticate: {w}");
        }
        false
    }
}

/// refresh's messages: to standard error, with their level.
fn log_to_stderr() {
    wic_tna::log::set_sink(Some(Box::new(|level, msg| {
        let l = match level {
            wic_tna::log::ERROR => "ERROR",
            wic_tna::log::WARN => "WARNING",
            wic_tna::log::INFO => "INFO",
            _ => "DEBUG",
        };
        eprintln!("wic-tna refresh: {l}: {msg}");
    })));
}

fn main() -> ExitCode {
    // Behave like other command-line tools when the reader goes away
    // (`wic-tna verify ... | head -1`): end quietly instead of panicking.
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = argv.first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    if cmd == "help" || cmd == "--help" || cmd == "-h" {
        print!(
            "{}",
            help_for(argv.get(1).map(String::as_str).unwrap_or(""))
        );
        return ExitCode::SUCCESS;
    }
    let args = match Args::parse(&argv[1..]) {
        Ok(a) => a,
        Err(e) if e == "help" => {
            print!("{}", help_for(cmd));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("wic-tna {cmd}: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cmd, &args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("wic-tna {cmd}: {e}");
            if e.starts_with("unknown") || e.contains("is required") || e.starts_with("give") {
                eprint!("{}", help_for(cmd));
                return ExitCode::from(2);
            }
            ExitCode::from(1)
        }
    }
}
