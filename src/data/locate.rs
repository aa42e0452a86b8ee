//! Where the data is: the folders searched, in order, and what a folder must hold.
//!
//! For a data set called `NAME` (`mnist`, `fashion-mnist`, `kmnist`; see [`DataSet`]):
//!
//! 1. `--data-dir DIR` (when given, the only place looked at);
//! 2. the set's variable: `$MNIST_DIR`, `$FASHION_MNIST_DIR`, `$KMNIST_DIR`;
//! 3. `./data/NAME`;
//! 4. `../shared/data/NAME`;
//! 5. where a system package installs it (`/usr/share/datasets/fashion-mnist`, from Debian's
//!    `dataset-fashion-mnist`);
//! 6. the user's cache folder (`~/.cache/mnist-nn/NAME` on Linux), where downloads go.
//!
//! A folder holds the set if it has the four IDX files (each plain or `.gz`) or seed 000's
//! `mnist_train.csv` and `mnist_test.csv`.

use std::path::{Path, PathBuf};

use super::sets::DataSet;

/// The four IDX files, in the order train images, train labels, test images, test labels.
pub const IDX_NAMES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// The files found in a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Paths of the four IDX files, in [`IDX_NAMES`] order.
    Idx([PathBuf; 4]),
    /// Seed 000's CSV files.
    Csv {
        /// `mnist_train.csv`
        train: PathBuf,
        /// `mnist_test.csv`
        test: PathBuf,
    },
}

/// A folder to look in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The folder.
    pub dir: PathBuf,
    /// Where the name came from (`--data-dir`, `$MNIST_DIR`, ...).
    pub origin: &'static str,
}

/// The user's cache folder for `set` (`~/.cache/mnist-nn/mnist` on Linux), if the system has one.
pub fn cache_dir(set: DataSet) -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("mnist-nn").join(set.name()))
}

/// The folders to search for `set`, in order. `data_dir` is `--data-dir`, `env_dir` the value of
/// the set's variable ([`DataSet::env_var`]).
pub fn candidates(set: DataSet, data_dir: Option<&Path>, env_dir: Option<&Path>) -> Vec<Candidate> {
    if let Some(dir) = data_dir {
        return vec![Candidate {
            dir: dir.to_path_buf(),
            origin: "--data-dir",
        }];
    }
    let mut list = Vec::new();
    if let Some(dir) = env_dir {
        list.push(Candidate {
            dir: dir.to_path_buf(),
            origin: set.env_var(),
        });
    }
    list.push(Candidate {
        dir: PathBuf::from("data").join(set.name()),
        origin: "the current folder",
    });
    list.push(Candidate {
        dir: PathBuf::from("../shared/data").join(set.name()),
        origin: "the shared folder",
    });
    if let Some(dir) = set.system_dir() {
        list.push(Candidate {
            dir: PathBuf::from(dir),
            origin: "the system package",
        });
    }
    if let Some(dir) = cache_dir(set) {
        list.push(Candidate {
            dir,
            origin: "the download cache",
        });
    }
    list
}

/// What MNIST files `dir` holds, if it holds a complete set.
pub fn layout_of(dir: &Path) -> Option<Layout> {
    let find = |name: &str| {
        [format!("{name}.gz"), name.to_string()]
            .into_iter()
            .map(|file| dir.join(file))
            .find(|path| path.is_file())
    };
    let idx: Vec<PathBuf> = IDX_NAMES.iter().filter_map(|name| find(name)).collect();
    if let Ok(files) = <[PathBuf; 4]>::try_from(idx) {
        return Some(Layout::Idx(files));
    }
    let (train, test) = (dir.join("mnist_train.csv"), dir.join("mnist_test.csv"));
    (train.is_file() && test.is_file()).then_some(Layout::Csv { train, test })
}

/// The first candidate folder that holds MNIST.
pub fn find(candidates: &[Candidate]) -> Option<&Candidate> {
    candidates.iter().find(|c| layout_of(&c.dir).is_some())
}

/// The message for when no folder holds `set`: where we looked and how to provide the files.
pub fn not_found_message(
    set: DataSet,
    candidates: &[Candidate],
    download_error: Option<&str>,
) -> String {
    let mut message = format!("{} not found. Looked in:\n", set.title());
    for c in candidates {
        message += &format!("  - {} ({})\n", c.dir.display(), c.origin);
    }
    if let Some(error) = download_error {
        message += &format!("and the download failed: {error}\n");
    }
    message += "Provide the data in one of these ways:\n\
        \x20 - run `mnist-nn download --dataset NAME --dir DIR` on a machine with internet access;\n\
        \x20 - or copy the four files train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,\n\
        \x20   t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (or mnist_train.csv and\n\
        \x20   mnist_test.csv) into a folder;\n\
        then pass that folder with --data-dir DIR or set ";
    message += &format!("{}=DIR.", set.env_var());
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_flag_is_the_only_candidate() {
        let list = candidates(DataSet::Mnist, Some(Path::new("/x")), Some(Path::new("/y")));
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].origin, "--data-dir");
    }

    #[test]
    fn env_comes_before_local_shared_and_system() {
        let list = candidates(DataSet::FashionMnist, None, Some(Path::new("/y")));
        let dirs: Vec<_> = list.iter().map(|c| c.dir.to_str().unwrap()).collect();
        assert_eq!(
            &dirs[..4],
            &[
                "/y",
                "data/fashion-mnist",
                "../shared/data/fashion-mnist",
                "/usr/share/datasets/fashion-mnist"
            ]
        );
        assert!(list[4].dir.ends_with("mnist-nn/fashion-mnist"));
    }

    #[test]
    fn recognises_idx_and_csv_folders() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(layout_of(dir.path()), None);
        for (i, name) in IDX_NAMES.iter().enumerate() {
            let file = if i % 2 == 0 {
                format!("{name}.gz")
            } else {
                name.to_string()
            };
            std::fs::write(dir.path().join(file), b"").unwrap();
        }
        assert!(matches!(layout_of(dir.path()), Some(Layout::Idx(_))));

        let csv_dir = tempfile::tempdir().unwrap();
        std::fs::write(csv_dir.path().join("mnist_train.csv"), b"").unwrap();
        assert_eq!(layout_of(csv_dir.path()), None);
        std::fs::write(csv_dir.path().join("mnist_test.csv"), b"").unwrap();
        assert!(matches!(
            layout_of(csv_dir.path()),
            Some(Layout::Csv { .. })
        ));
    }
}
