//! Environment variables a flavor may not set on a job on its own authority.
//!
//! `entrypoint-only` keeps a flavor from choosing what code a job runs. Some
//! variables would undo that without touching the command: they make the
//! dynamic loader, an interpreter or a shell load code (`LD_PRELOAD`,
//! `PYTHONPATH`, `BASH_ENV`), pick another program (`PATH`), or redirect whom
//! the job trusts and talks to (CA bundles, proxies, package indexes). A
//! flavor may pass such a variable only when the launch's own environment
//! gave it with the same value (the user set it), or when the step operator
//! is granted `job-env=NAME` (or `arbitrary-commands`, which allows more).

/// Why a variable is guarded, as the denial explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hazard {
    /// The dynamic loader or C library loads code or changes behaviour.
    Loader,
    /// An interpreter runs or imports code from it.
    Interpreter,
    /// A shell runs code from it.
    Shell,
    /// It chooses which program a command name runs.
    ProgramLookup,
    /// It changes which certificates or proxies the job trusts.
    Trust,
    /// It changes where packages are downloaded from.
    PackageIndex,
}

impl Hazard {
    fn explain(self) -> &'static str {
        match self {
            Hazard::Loader => "makes the dynamic loader load other code into the job",
            Hazard::Interpreter => "makes the job's interpreter run or import other code",
            Hazard::Shell => "makes a shell in the job run other code",
            Hazard::ProgramLookup => "changes which programs the job's command runs",
            Hazard::Trust => "changes which certificates or proxies the job trusts",
            Hazard::PackageIndex => "changes where the job downloads packages from",
        }
    }
}

/// Guarded names (matched ignoring case) and name prefixes (ending in `*`).
const GUARDED: &[(&str, Hazard)] = &[
    ("LD_*", Hazard::Loader),
    ("DYLD_*", Hazard::Loader),
    ("GCONV_PATH", Hazard::Loader),
    ("GLIBC_TUNABLES", Hazard::Loader),
    ("HOSTALIASES", Hazard::Loader),
    ("PYTHONPATH", Hazard::Interpreter),
    ("PYTHONHOME", Hazard::Interpreter),
    ("PYTHONSTARTUP", Hazard::Interpreter),
    ("PYTHONUSERBASE", Hazard::Interpreter),
    ("PYTHONBREAKPOINT", Hazard::Interpreter),
    ("PYTHONWARNINGS", Hazard::Interpreter),
    ("PYTHONEXECUTABLE", Hazard::Interpreter),
    ("PYTHONPLATLIBDIR", Hazard::Interpreter),
    ("PYTHONINSPECT", Hazard::Interpreter),
    ("NODE_OPTIONS", Hazard::Interpreter),
    ("NODE_PATH", Hazard::Interpreter),
    ("PERL5OPT", Hazard::Interpreter),
    ("PERL5LIB", Hazard::Interpreter),
    ("PERLLIB", Hazard::Interpreter),
    ("RUBYOPT", Hazard::Interpreter),
    ("RUBYLIB", Hazard::Interpreter),
    ("JAVA_TOOL_OPTIONS", Hazard::Interpreter),
    ("_JAVA_OPTIONS", Hazard::Interpreter),
    ("JDK_JAVA_OPTIONS", Hazard::Interpreter),
    ("CLASSPATH", Hazard::Interpreter),
    ("BASH_ENV", Hazard::Shell),
    ("ENV", Hazard::Shell),
    ("BASH_FUNC_*", Hazard::Shell),
    ("SHELLOPTS", Hazard::Shell),
    ("BASHOPTS", Hazard::Shell),
    ("PS4", Hazard::Shell),
    ("PROMPT_COMMAND", Hazard::Shell),
    ("IFS", Hazard::Shell),
    ("GIT_SSH", Hazard::Shell),
    ("GIT_SSH_COMMAND", Hazard::Shell),
    ("GIT_EXEC_PATH", Hazard::Shell),
    ("GIT_CONFIG_*", Hazard::Shell),
    ("GIT_ASKPASS", Hazard::Shell),
    ("SSH_ASKPASS", Hazard::Shell),
    ("PATH", Hazard::ProgramLookup),
    ("SSL_CERT_FILE", Hazard::Trust),
    ("SSL_CERT_DIR", Hazard::Trust),
    ("REQUESTS_CA_BUNDLE", Hazard::Trust),
    ("CURL_CA_BUNDLE", Hazard::Trust),
    ("NODE_EXTRA_CA_CERTS", Hazard::Trust),
    ("HTTP_PROXY", Hazard::Trust),
    ("HTTPS_PROXY", Hazard::Trust),
    ("ALL_PROXY", Hazard::Trust),
    ("NO_PROXY", Hazard::Trust),
    ("PIP_INDEX_URL", Hazard::PackageIndex),
    ("PIP_EXTRA_INDEX_URL", Hazard::PackageIndex),
    ("PIP_FIND_LINKS", Hazard::PackageIndex),
    ("UV_INDEX", Hazard::PackageIndex),
    ("UV_INDEX_URL", Hazard::PackageIndex),
    ("UV_DEFAULT_INDEX", Hazard::PackageIndex),
    ("UV_EXTRA_INDEX_URL", Hazard::PackageIndex),
    ("UV_FIND_LINKS", Hazard::PackageIndex),
];

/// Why `name` is guarded, or None when a flavor may set it freely.
pub fn hazard(name: &str) -> Option<Hazard> {
    let upper = name.to_ascii_uppercase();
    GUARDED.iter().find_map(|(pattern, hazard)| {
        let matches = match pattern.strip_suffix('*') {
            Some(prefix) => upper.starts_with(prefix),
            None => upper == *pattern,
        };
        matches.then_some(*hazard)
    })
}

/// The denial message for a guarded variable the flavor set.
pub fn denial_message(name: &str, hazard: Hazard) -> String {
    format!(
        "the job sets `{name}`, which {}; a flavor may pass it only when the launch's own environment gives it \
         with the same value, or when the step operator is granted it: --grant job-env={name}",
        hazard.explain()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarded_names_match_ignoring_case_and_by_prefix() {
        let cases: &[(&str, Option<Hazard>)] = &[
            ("LD_PRELOAD", Some(Hazard::Loader)),
            ("ld_library_path", Some(Hazard::Loader)),
            ("PYTHONPATH", Some(Hazard::Interpreter)),
            ("BASH_FUNC_ls%%", Some(Hazard::Shell)),
            ("PATH", Some(Hazard::ProgramLookup)),
            ("https_proxy", Some(Hazard::Trust)),
            ("UV_INDEX_URL", Some(Hazard::PackageIndex)),
            ("PYTHONUNBUFFERED", None),
            ("ZENML_STORE_URL", None),
            ("MY_PATH", None),
            ("HOLD_PRELOAD", None),
        ];
        for (name, expected) in cases {
            assert_eq!(hazard(name), *expected, "{name}");
        }
    }
}
