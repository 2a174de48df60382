//! Locating the workspace's binaries from tests.

use std::path::PathBuf;

use crate::Error;

/// The zai-proxy binary: `$ZAI_PROXY_BIN` if set, else `zai-proxy` in the target profile
/// directory of the running executable (`target/<profile>/zai-proxy`, next to the `deps/`
/// folder test executables run from; `cargo test --workspace` builds it there).
pub fn proxy_bin() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("ZAI_PROXY_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(Error::ProxyBinMissing(path))
        };
    }
    let exe = std::env::current_exe()?;
    let mut dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if dir.file_name().is_some_and(|name| name == "deps") {
        dir.pop();
    }
    let path = dir.join(format!("zai-proxy{}", std::env::consts::EXE_SUFFIX));
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::ProxyBinMissing(path))
    }
}
