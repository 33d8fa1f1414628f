//! The package cache: every `.deb` a lock names, stored by its SHA-256 as `<cache>/sha256/<hex>`, verified before it
//! enters and whenever it is used. What the cache lacks comes from the mirror, else from snapshot.debian.org at the
//! date of the suite the lock was resolved from (Debian removes superseded versions from the mirrors within days).

use std::cell::RefCell;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use sha2::Digest as _;

use super::archive::Mirrors;
use super::lock::{Lock, Locked};
use super::Sha256;

/// A locked package as a verified file in the cache.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched {
    pub name: String,
    pub version: String,
    pub architecture: String,
    /// `<cache>/sha256/<hex>`.
    pub path: PathBuf,
}

impl Fetched {
    /// `<name>_<version>_<architecture>.deb`, the epoch's colon written `%3a` as apt names its downloads.
    pub fn file_name(&self) -> String {
        format!("{}_{}_{}.deb", self.name, self.version.replace(':', "%3a"), self.architecture)
    }
}

pub struct PackageCache {
    dir: PathBuf,
}

impl PackageCache {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn path(&self, sha256: &Sha256) -> PathBuf {
        self.dir.join("sha256").join(sha256.hex())
    }
}

/// What one download gave: the file in the cache, or why the source did not have it (the next one is tried).
enum Outcome {
    Stored,
    /// An HTTP status other than success (404: the pool no longer has that version).
    Missing(String),
    /// No answer at all (DNS, connection refused, time-out).
    Unreachable(String),
}

/// Each locked package of `architecture` as a verified file in `cache`, fetching what it lacks.
pub fn fetch_locked(
    cache: &PackageCache,
    image: &str,
    lock: &Lock,
    architecture: &str,
    mirrors: &Mirrors,
) -> Result<Vec<Fetched>> {
    let packages = lock.for_architecture(image, architecture)?;
    let started = Instant::now();
    let fetcher = Fetcher::new(cache, image, mirrors)?;
    let mut fetched = Vec::new();
    for package in packages {
        let path = cache.path(&package.sha256);
        let describe =
            || format!("image {image}: package {} {} ({})", package.name, package.version, package.architecture);
        let result = if path.exists() { verify(&path, package) } else { fetcher.fetch(lock, package, &path) };
        result.map_err(|error| anyhow::anyhow!("{}: {error:#}", describe()))?;
        fetched.push(Fetched {
            name: package.name.clone(),
            version: package.version.clone(),
            architecture: package.architecture.clone(),
            path,
        });
    }
    let (count, bytes) = *fetcher.downloaded.borrow();
    if count > 0 {
        let seconds = started.elapsed().as_secs_f64();
        let total = fetched.len();
        let mb = bytes as f64 / 1e6;
        eprintln!("xtask: image {image}: fetched {count} of its {total} Debian packages ({mb:.1} MB) in {seconds:.1}s");
    }
    Ok(fetched)
}

/// Checks a cached file against the lock, naming both digests and the fix when they differ.
fn verify(path: &Path, package: &Locked) -> Result<()> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).with_context(|| format!("reading {}", path.display()))?;
    let actual = Sha256::from_digest(hasher.finalize());
    if size != package.size || actual != package.sha256 {
        bail!(
            "{} is not the locked file: SHA-256 {actual} ({size} bytes), expected {} ({} bytes); delete it and fetch again",
            path.display(),
            package.sha256,
            package.size
        );
    }
    Ok(())
}

struct Fetcher<'a> {
    cache: &'a PackageCache,
    image: &'a str,
    mirrors: &'a Mirrors,
    mirror: reqwest::blocking::Client,
    snapshot: reqwest::blocking::Client,
    /// Why snapshot.debian.org could not be reached, once it could not: it is not asked again in this run.
    snapshot_down: RefCell<Option<String>>,
    downloaded: RefCell<(usize, u64)>,
}

impl<'a> Fetcher<'a> {
    fn new(cache: &'a PackageCache, image: &'a str, mirrors: &'a Mirrors) -> Result<Self> {
        let client = |connect| {
            reqwest::blocking::Client::builder().connect_timeout(connect).timeout(Duration::from_secs(600)).build()
        };
        Ok(Self {
            cache,
            image,
            mirrors,
            mirror: client(Duration::from_secs(10))?,
            snapshot: client(Duration::from_secs(5))?,
            snapshot_down: RefCell::new(None),
            downloaded: RefCell::new((0, 0)),
        })
    }

    /// The mirror, then snapshot.debian.org at the suite's date and a day later (a state the snapshot had imported
    /// by then: it takes its copies some hours after the archive writes them).
    fn fetch(&self, lock: &Lock, package: &Locked, path: &Path) -> Result<()> {
        let date = lock.date_of(package.suite)?;
        let archive = package.archive.name();
        let mut urls = vec![(format!("{}/{}", self.mirrors.of(package.archive), package.filename), false)];
        for moment in [date, date + jiff::SignedDuration::from_hours(24)] {
            let stamp = moment.strftime("%Y%m%dT%H%M%SZ");
            urls.push((format!("{}/archive/{archive}/{stamp}/{}", self.mirrors.snapshot, package.filename), true));
        }
        let mut looked = Vec::new();
        for (url, snapshot) in urls {
            if snapshot {
                if let Some(reason) = self.snapshot_down.borrow().as_ref() {
                    looked.push(format!("{url} ({reason})"));
                    continue;
                }
            }
            let client = if snapshot { &self.snapshot } else { &self.mirror };
            match self.download(client, &url, package, path)? {
                Outcome::Stored => return Ok(()),
                Outcome::Missing(reason) => looked.push(format!("{url} ({reason})")),
                Outcome::Unreachable(reason) => {
                    if snapshot {
                        *self.snapshot_down.borrow_mut() = Some(reason.clone());
                    }
                    looked.push(format!("{url} ({reason})"));
                }
            }
        }
        bail!(
            "found nowhere: {}. Run `cargo xtask lock {}` to move to current versions, or put the .deb into {} named by its SHA-256 {}",
            looked.join(", "),
            self.image,
            self.cache.dir.join("sha256").display(),
            package.sha256
        )
    }

    /// Downloads into a temporary file beside the cache entry and renames it into place once size and SHA-256 match.
    fn download(
        &self,
        client: &reqwest::blocking::Client,
        url: &str,
        package: &Locked,
        path: &Path,
    ) -> Result<Outcome> {
        let response = match client.get(url).send() {
            Ok(response) => response,
            Err(error) => return Ok(Outcome::Unreachable(crate::process::error_chain(&error))),
        };
        if !response.status().is_success() {
            return Ok(Outcome::Missing(response.status().to_string()));
        }
        let folder = path.parent().context("a cache path has a folder")?;
        std::fs::create_dir_all(folder).with_context(|| format!("creating {}", folder.display()))?;
        // Unique per process and download: builds in parallel may share the cache.
        static DOWNLOADS: AtomicUsize = AtomicUsize::new(0);
        let serial = DOWNLOADS.fetch_add(1, Ordering::Relaxed);
        let partial = folder.join(format!(".partial-{}-{}-{serial}", package.sha256, std::process::id()));
        let result = self.receive(response, url, package, &partial).and_then(|()| {
            std::fs::rename(&partial, path).with_context(|| format!("moving {} into place", partial.display()))
        });
        if result.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        result.map(|()| Outcome::Stored)
    }

    fn receive(
        &self,
        response: reqwest::blocking::Response,
        url: &str,
        package: &Locked,
        partial: &Path,
    ) -> Result<()> {
        let mut file = std::fs::File::create(partial).with_context(|| format!("creating {}", partial.display()))?;
        let mut hasher = sha2::Sha256::new();
        let mut body = response.take(package.size + 1);
        let mut buffer = vec![0; 1 << 16];
        let mut size = 0u64;
        loop {
            let read = body.read(&mut buffer).with_context(|| format!("reading {url}"))?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            file.write_all(&buffer[..read]).with_context(|| format!("writing {}", partial.display()))?;
            size += read as u64;
        }
        file.sync_all()?;
        let actual = Sha256::from_digest(hasher.finalize());
        if size != package.size || actual != package.sha256 {
            bail!(
                "{url} served a different file: SHA-256 {actual} ({size} bytes), the lock says {} ({} bytes); \
                 nothing was cached. A proxy or mirror that alters files is not to be trusted; `cargo xtask lock` \
                 if the archive itself changed",
                package.sha256,
                package.size
            );
        }
        let mut downloaded = self.downloaded.borrow_mut();
        downloaded.0 += 1;
        downloaded.1 += size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::{BufRead as _, BufReader};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::debian::lock::tests::sample;

    const DEB: &[u8] = b"!<arch>\nnot really a package\n";

    /// A lock of one package, `fake` 1:1.0-1, whose file is `DEB`.
    fn lock() -> Lock {
        let mut lock = sample();
        let mut package = lock.packages[0].clone();
        package.name = "fake".into();
        package.version = "1:1.0-1".into();
        package.filename = "pool/main/f/fake/fake_1.0-1_amd64.deb".into();
        package.size = DEB.len() as u64;
        package.sha256 = Sha256::of(DEB);
        lock.packages = vec![package];
        lock
    }

    /// An HTTP server on 127.0.0.1 that answers each request for a path of `files` with its content, others with
    /// 404, records every path asked for, and stops by itself after a minute.
    fn serve(files: HashMap<String, Vec<u8>>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        std::thread::spawn(move || {
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap() > 2 {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or_default().to_owned();
                log.lock().unwrap().push(path.clone());
                let (status, body) = match files.get(&path) {
                    Some(body) => ("200 OK", body.clone()),
                    None => ("404 Not Found", Vec::new()),
                };
                let mut stream = stream;
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
            }
        });
        (address, asked)
    }

    fn mirrors(address: &str, snapshot: &str) -> Mirrors {
        Mirrors {
            debian: format!("{address}/debian"),
            security: format!("{address}/debian-security"),
            snapshot: snapshot.to_owned(),
        }
    }

    #[test]
    fn a_fetch_fills_the_cache_from_the_mirror_and_a_cache_hit_asks_nothing() {
        let path = "/debian/pool/main/f/fake/fake_1.0-1_amd64.deb";
        let (address, asked) = serve(HashMap::from([(path.to_owned(), DEB.to_vec())]));
        let folder = tempfile::tempdir().unwrap();
        let cache = PackageCache::new(folder.path().to_owned());
        let mirrors = mirrors(&address, &address);
        let fetched = fetch_locked(&cache, "shop", &lock(), "amd64", &mirrors).unwrap();
        assert_eq!(fetched.len(), 1);
        assert_eq!(fetched[0].path, folder.path().join("sha256").join(Sha256::of(DEB).hex()));
        assert_eq!(fetched[0].file_name(), "fake_1%3a1.0-1_amd64.deb");
        assert_eq!(std::fs::read(&fetched[0].path).unwrap(), DEB);
        assert_eq!(std::fs::read_dir(folder.path().join("sha256")).unwrap().count(), 1, "no partial file is left");
        assert_eq!(*asked.lock().unwrap(), [path]);

        assert_eq!(fetch_locked(&cache, "shop", &lock(), "amd64", &mirrors).unwrap(), fetched);
        assert_eq!(asked.lock().unwrap().len(), 1, "a cache hit makes no request");
    }

    #[test]
    fn the_snapshot_serves_what_the_mirror_no_longer_has() {
        let path = "/snapshot/archive/debian/20261122T091544Z/pool/main/f/fake/fake_1.0-1_amd64.deb";
        let (address, asked) = serve(HashMap::from([(path.to_owned(), DEB.to_vec())]));
        let folder = tempfile::tempdir().unwrap();
        let cache = PackageCache::new(folder.path().to_owned());
        let mirrors = mirrors(&address, &format!("{address}/snapshot"));
        let fetched = fetch_locked(&cache, "shop", &lock(), "amd64", &mirrors).unwrap();
        assert_eq!(std::fs::read(&fetched[0].path).unwrap(), DEB);
        let asked = asked.lock().unwrap();
        assert_eq!(asked.len(), 3, "{asked:?}");
        assert!(asked[0].starts_with("/debian/pool/") && asked[1].contains("/20261121T091544Z/"), "{asked:?}");
    }

    #[test]
    fn a_tampered_cache_file_is_refused_with_both_digests() {
        let folder = tempfile::tempdir().unwrap();
        let cache = PackageCache::new(folder.path().to_owned());
        let path = cache.path(&Sha256::of(DEB));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"!<arch>\nsomething else entirely\n").unwrap();
        let unused = mirrors("http://127.0.0.1:9", "http://127.0.0.1:9");
        let error = fetch_locked(&cache, "shop", &lock(), "amd64", &unused).unwrap_err().to_string();
        assert!(error.starts_with("image shop: package fake 1:1.0-1 (amd64): "), "{error}");
        assert!(error.contains(Sha256::of(DEB).hex()), "{error}");
        assert!(error.contains(Sha256::of(b"!<arch>\nsomething else entirely\n").hex()), "{error}");
        assert!(error.contains("delete it and fetch again") && !error.contains('\n'), "{error}");
    }

    #[test]
    fn a_download_that_does_not_match_the_lock_is_not_cached() {
        let path = "/debian/pool/main/f/fake/fake_1.0-1_amd64.deb";
        let (address, _) = serve(HashMap::from([(path.to_owned(), b"!<arch>\nnot really a packagE\n".to_vec())]));
        let folder = tempfile::tempdir().unwrap();
        let cache = PackageCache::new(folder.path().to_owned());
        let error = fetch_locked(&cache, "shop", &lock(), "amd64", &mirrors(&address, &address)).unwrap_err();
        let error = error.to_string();
        assert!(error.contains("served a different file") && error.contains(Sha256::of(DEB).hex()), "{error}");
        assert_eq!(std::fs::read_dir(folder.path().join("sha256")).unwrap().count(), 0, "nothing entered the cache");
    }

    #[test]
    fn a_package_found_nowhere_names_where_it_looked_and_the_fixes() {
        let (address, asked) = serve(HashMap::new());
        let folder = tempfile::tempdir().unwrap();
        let cache = PackageCache::new(folder.path().to_owned());
        // Port 9 (discard) refuses: the snapshot is unreachable, and asked once only.
        let error =
            fetch_locked(&cache, "shop", &lock(), "amd64", &mirrors(&address, "http://127.0.0.1:9")).unwrap_err();
        let error = error.to_string();
        assert!(!error.contains('\n'), "{error}");
        assert!(error.starts_with("image shop: package fake 1:1.0-1 (amd64): found nowhere: "), "{error}");
        assert!(error.contains("/debian/pool/main/f/fake/fake_1.0-1_amd64.deb (404 Not Found)"), "{error}");
        assert!(error.contains("http://127.0.0.1:9/archive/debian/20261122T091544Z/pool/"), "{error}");
        assert!(error.contains("`cargo xtask lock shop`") && error.contains(Sha256::of(DEB).hex()), "{error}");
        assert_eq!(asked.lock().unwrap().len(), 1);
    }
}
