//! Byte sizes as Kubernetes writes quantities (`500Mi`, `2Gi`, `1.5G`, `1000000`), for `image-size`'s
//! `maxCompressedSize`, and sizes as messages say them (`2.4 GiB`).
//!
//! Only the forms that make sense for a byte count are read: a non-negative decimal number with an
//! optional binary (`Ki` … `Ei`) or decimal (`k` … `E`) suffix. Milli (`m`) and exponent forms (`1e9`)
//! are refused with a message that shows the accepted ones.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

/// A positive number of bytes, remembered as written (`2Gi`) for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByteQuantity {
    bytes: u64,
    written: String,
}

/// Why a quantity was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (write it as Kubernetes does, e.g. 500Mi, 2Gi, 1.5G)")]
pub struct QuantityError {
    input: String,
    reason: &'static str,
}

const SUFFIXES: [(&str, u64); 12] = [
    ("Ki", 1 << 10),
    ("Mi", 1 << 20),
    ("Gi", 1 << 30),
    ("Ti", 1 << 40),
    ("Pi", 1 << 50),
    ("Ei", 1 << 60),
    ("k", 1_000),
    ("M", 1_000_000),
    ("G", 1_000_000_000),
    ("T", 1_000_000_000_000),
    ("P", 1_000_000_000_000_000),
    ("E", 1_000_000_000_000_000_000),
];

impl ByteQuantity {
    /// `bytes` written as a whole number of GiB, MiB, KiB or bytes.
    pub fn from_bytes(bytes: u64) -> Self {
        let written = match bytes {
            b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}Gi", b >> 30),
            b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}Mi", b >> 20),
            b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}Ki", b >> 10),
            b => b.to_string(),
        };
        Self { bytes, written }
    }

    /// The number of bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl FromStr for ByteQuantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let refuse = |reason| QuantityError {
            input: crate::facts::truncate_chars(input, 64),
            reason,
        };
        let text = input.trim();
        let (number, multiplier) = SUFFIXES
            .iter()
            .find_map(|(suffix, m)| Some((text.strip_suffix(suffix)?, *m)))
            .unwrap_or((text, 1));
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) || fraction.len() > 9 {
            return Err(refuse(
                "not a number of bytes with an optional suffix Ki, Mi, Gi, Ti, Pi, Ei, k, M, G, T, P or E",
            ));
        }
        let too_large = || refuse("larger than 16 EiB");
        let whole: u64 = whole.parse().map_err(|_| too_large())?;
        let mut bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
        if !fraction.is_empty() {
            let scale = 10_u128.pow(fraction.len() as u32);
            let part: u128 = fraction.parse().map_err(|_| too_large())?;
            let extra =
                u64::try_from(part * u128::from(multiplier) / scale).map_err(|_| too_large())?;
            bytes = bytes.checked_add(extra).ok_or_else(too_large)?;
        }
        if bytes == 0 {
            return Err(refuse("must be more than zero"));
        }
        Ok(Self {
            bytes,
            written: text.to_owned(),
        })
    }
}

impl fmt::Display for ByteQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

impl<'de> Deserialize<'de> for ByteQuantity {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Bytes(bytes) => bytes.to_string(),
            Written::Text(text) => text,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for ByteQuantity {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteQuantity".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size in bytes as Kubernetes writes quantities: 500Mi, 2Gi, 1.5G, or a number of bytes.",
            "anyOf": [
                {"type": "integer", "minimum": 1},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]{1,9})?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"}
            ]
        })
    }
}

/// A size as messages say it, in binary units with one decimal: `512 bytes`, `1.5 KiB`, `2.4 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::binary("2Gi", 2 << 30)]
    #[case::mebi("500Mi", 500 << 20)]
    #[case::decimal("1.5G", 1_500_000_000)]
    #[case::kilo("100k", 100_000)]
    #[case::plain("1000000", 1_000_000)]
    #[case::fraction_of_binary("0.5Ki", 512)]
    #[case::exbi("15Ei", 15 << 60)]
    fn quantities_parse_as_kubernetes_writes_them(#[case] text: &str, #[case] bytes: u64) {
        let quantity: ByteQuantity = text.parse().expect("quantity");
        assert_eq!(quantity.bytes(), bytes);
        assert_eq!(quantity.to_string(), text);
    }

    #[rstest]
    #[case::zero("0", "more than zero")]
    #[case::zero_with_suffix("0Gi", "more than zero")]
    #[case::negative("-1Gi", "not a number")]
    #[case::milli("500m", "not a number")]
    #[case::exponent("1e9", "not a number")]
    #[case::lowercase_binary("2gi", "not a number")]
    #[case::empty("", "not a number")]
    #[case::space_inside("2 Gi", "not a number")]
    #[case::overflow("17Ei", "larger than 16 EiB")]
    #[case::huge("99999999999999999999999", "larger than 16 EiB")]
    fn other_forms_are_refused_with_the_accepted_ones_shown(
        #[case] text: &str,
        #[case] reason: &str,
    ) {
        let error = text.parse::<ByteQuantity>().expect_err("refused");
        let message = error.to_string();
        assert!(message.contains(reason), "{message}");
        assert!(message.contains("e.g. 500Mi, 2Gi"), "{message}");
    }

    #[rstest]
    #[case(0, "0 bytes")]
    #[case(1023, "1023 bytes")]
    #[case(1536, "1.5 KiB")]
    #[case(2_576_980_378, "2.4 GiB")]
    #[case(u64::MAX, "16.0 EiB")]
    fn sizes_read_in_binary_units(#[case] bytes: u64, #[case] text: &str) {
        assert_eq!(human(bytes), text);
    }

    #[test]
    fn whole_units_are_written_back_in_them() {
        assert_eq!(ByteQuantity::from_bytes(2 << 30).to_string(), "2Gi");
        assert_eq!(ByteQuantity::from_bytes(3 << 20).to_string(), "3Mi");
        assert_eq!(ByteQuantity::from_bytes(1000).to_string(), "1000");
    }
}
