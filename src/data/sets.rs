//! The data sets mnist-nn knows by name: MNIST and its two drop-in replacements, Fashion-MNIST
//! (Zalando's clothes, Xiao et al. 2017) and Kuzushiji-MNIST (cursive Japanese, Clanuwat et al.
//! 2018). All three are 28x28 grey images in the same four IDX files, 60,000 to train and 10,000
//! to test, 10 classes; what differs is where they come from, how to check them, where they are
//! kept and what their classes are called.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A data set of 28x28 grey images in 10 classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum DataSet {
    /// Handwritten digits (LeCun et al. 1998).
    #[default]
    Mnist,
    /// Photographs of clothes, shoes and bags (Xiao, Rasul & Vollgraf 2017).
    FashionMnist,
    /// Ten cursive hiragana (Clanuwat et al. 2018).
    Kmnist,
}

/// How a downloaded file is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// SHA-256 of the decompressed content: holds for any compression of the same data.
    Content(&'static str),
    /// SHA-256 of the `.gz` file as served (all that is published for some sets).
    Compressed(&'static str),
}

impl DataSet {
    /// Every set, in the order the command line lists them.
    pub const ALL: [DataSet; 3] = [DataSet::Mnist, DataSet::FashionMnist, DataSet::Kmnist];

    /// The name on the command line and in saved models: `mnist`, `fashion-mnist`, `kmnist`.
    pub fn name(self) -> &'static str {
        match self {
            DataSet::Mnist => "mnist",
            DataSet::FashionMnist => "fashion-mnist",
            DataSet::Kmnist => "kmnist",
        }
    }

    /// The name in prose.
    pub fn title(self) -> &'static str {
        match self {
            DataSet::Mnist => "MNIST",
            DataSet::FashionMnist => "Fashion-MNIST",
            DataSet::Kmnist => "Kuzushiji-MNIST",
        }
    }

    /// The environment variable naming the folder that holds the set.
    pub fn env_var(self) -> &'static str {
        match self {
            DataSet::Mnist => "MNIST_DIR",
            DataSet::FashionMnist => "FASHION_MNIST_DIR",
            DataSet::Kmnist => "KMNIST_DIR",
        }
    }

    /// Where a system package installs the set, if one does (Debian's `dataset-fashion-mnist`).
    pub fn system_dir(self) -> Option<&'static str> {
        match self {
            DataSet::FashionMnist => Some("/usr/share/datasets/fashion-mnist"),
            DataSet::Mnist | DataSet::Kmnist => None,
        }
    }

    /// Base URLs serving the four `.gz` files, tried in order.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            DataSet::Mnist => &[
                "https://ossci-datasets.s3.amazonaws.com/mnist/",
                "https://storage.googleapis.com/cvdf-datasets/mnist/",
            ],
            DataSet::FashionMnist => {
                &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"]
            }
            DataSet::Kmnist => &["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
        }
    }

    /// The checksum of each of the four IDX files, in [`IDX_NAMES`](super::locate::IDX_NAMES)
    /// order.
    ///
    /// MNIST's are the SHA-256 of the decompressed files. Fashion-MNIST publishes MD5s of its
    /// `.gz` files; ours are the SHA-256 of the decompressed content of the files Debian's
    /// `dataset-fashion-mnist` package installs (taken from the authors' repository), which any
    /// recompression keeps. For Kuzushiji-MNIST only checksums of the `.gz` files as served are
    /// available (SHA-256, as torchvision's Ruby port records them); these files could not be
    /// fetched here to check them.
    pub fn checksums(self) -> [Checksum; 4] {
        use Checksum::{Compressed, Content};
        match self {
            DataSet::Mnist => [
                Content("ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
                Content("65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
                Content("0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
                Content("ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
            ],
            DataSet::FashionMnist => [
                Content("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
                Content("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
                Content("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
                Content("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
            ],
            DataSet::Kmnist => [
                Compressed("51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"),
                Compressed("e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"),
                Compressed("edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
                Compressed("20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
            ],
        }
    }

    /// The classes' names, label by label, as their authors give them.
    pub fn class_names(self) -> [&'static str; 10] {
        match self {
            DataSet::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DataSet::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
            DataSet::Kmnist => [
                "お (o)",
                "き (ki)",
                "す (su)",
                "つ (tsu)",
                "な (na)",
                "は (ha)",
                "ま (ma)",
                "や (ya)",
                "れ (re)",
                "を (wo)",
            ],
        }
    }

    /// Short ASCII names for picture captions (at most 7 letters, digits, `-` or `/`).
    pub fn caption_names(self) -> [&'static str; 10] {
        match self {
            DataSet::Mnist => self.class_names(),
            DataSet::FashionMnist => [
                "T-SHIRT", "TROUSER", "PULLOVR", "DRESS", "COAT", "SANDAL", "SHIRT", "SNEAKER",
                "BAG", "BOOT",
            ],
            DataSet::Kmnist => ["O", "KI", "SU", "TSU", "NA", "HA", "MA", "YA", "RE", "WO"],
        }
    }

    /// The name of class `label` (0-9).
    pub fn class_name(self, label: u8) -> &'static str {
        self.class_names()[label as usize]
    }

    /// Whether pictures of this set were made as MNIST's digits were: the ink's bounding box
    /// scaled to 20x20 and centred by its centre of mass in 28x28 (what `predict` repeats).
    pub fn is_digits(self) -> bool {
        self == DataSet::Mnist
    }
}

impl fmt::Display for DataSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataSet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        DataSet::ALL
            .into_iter()
            .find(|set| set.name() == s)
            .ok_or_else(|| format!("unknown data set '{s}': use mnist, fashion-mnist or kmnist"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_serialise_as_written() {
        for set in DataSet::ALL {
            assert_eq!(set.name().parse::<DataSet>(), Ok(set));
            assert_eq!(serde_json::to_string(&set).unwrap(), format!("\"{set}\""));
        }
        assert!("fashion"
            .parse::<DataSet>()
            .unwrap_err()
            .contains("fashion-mnist"));
    }

    #[test]
    fn caption_names_fit_the_picture_font() {
        for set in DataSet::ALL {
            for name in set.caption_names() {
                assert!(name.len() <= 7, "{name}");
                assert!(name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || "-/".contains(c)));
            }
        }
    }
}
