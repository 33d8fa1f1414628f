//! File-system steps the stages share.

use std::path::Path;

use anyhow::{Context as _, Result};

/// Removes `dir` and everything in it; a folder that is not there is already removed. Any other failure (a file
/// still open, no permission) is an error naming the folder: a stale output left in place would be read as new.
pub fn remove_dir_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Writes `contents` to `path`, creating its folder first: every file the stages leave under `out/` goes through here,
/// so that an error names the file.
pub fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_written_into_a_new_folder_and_a_folder_removed_with_its_contents_even_twice() {
        let dir = std::env::temp_dir().join(format!("xtask-files-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("inner")).unwrap();
        std::fs::write(dir.join("inner").join("report.json"), "{}").unwrap();
        remove_dir_if_present(&dir).unwrap();
        assert!(!dir.exists());
        write(&dir.join("a").join("b.json"), "{}").unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a").join("b.json")).unwrap(), "{}");
        remove_dir_if_present(&dir).unwrap();
        remove_dir_if_present(&dir).unwrap();
    }
}
