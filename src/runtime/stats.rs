//! The statistics of the A/B comparison in the run report: a two-proportion
//! z-test of each variant against the campaign's first (docs/runtime.md,
//! "Goals and A/B outcomes"). Pure arithmetic.

/// The complementary error function, with a fractional error below 1.2e-7
/// everywhere (Numerical Recipes in C, 2nd ed., §6.2, `erfcc`: a Chebyshev
/// fit of erfc(x)·exp(x²)).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// Conversions out of contacts that entered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proportion {
    pub converted: u64,
    pub entered: u64,
}

impl Proportion {
    /// `None` when nobody entered.
    pub fn rate(self) -> Option<f64> {
        (self.entered > 0).then(|| self.converted as f64 / self.entered as f64)
    }
}

/// A variant against the baseline (the first variant).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// `rate / baseline rate − 1`; `None` when either rate is undefined
    /// (nobody entered) or the baseline's is 0.
    pub uplift: Option<f64>,
    /// `1 − p` of the two-sided two-proportion z-test with the pooled
    /// standard error; `None` when either side has nobody, or when the pooled
    /// rate is 0 or 1 (no variance: the test says nothing).
    pub confidence: Option<f64>,
    pub z: Option<f64>,
}

/// Compares `variant` with `baseline`:
/// p̂ = (c₁ + c₂) / (n₁ + n₂), SE = √(p̂ (1 − p̂) (1/n₁ + 1/n₂)),
/// z = (c₂/n₂ − c₁/n₁) / SE, p = erfc(|z| / √2), confidence = 1 − p.
pub fn compare(baseline: Proportion, variant: Proportion) -> Comparison {
    let (Some(r1), Some(r2)) = (baseline.rate(), variant.rate()) else {
        return Comparison { uplift: None, confidence: None, z: None };
    };
    let uplift = (r1 > 0.0).then(|| r2 / r1 - 1.0);
    let (n1, n2) = (baseline.entered as f64, variant.entered as f64);
    let pooled = (baseline.converted + variant.converted) as f64 / (n1 + n2);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2)).sqrt();
    if se.is_nan() || se <= 0.0 {
        return Comparison { uplift, confidence: None, z: None };
    }
    let z = (r2 - r1) / se;
    let p = erfc(z.abs() / std::f64::consts::SQRT_2);
    Comparison { uplift, confidence: Some((1.0 - p).clamp(0.0, 1.0)), z: Some(z) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(converted: u64, entered: u64) -> Proportion {
        Proportion { converted, entered }
    }

    #[test]
    fn erfc_matches_the_c_library_to_1e7_relative() {
        // Expected values: Python 3 `math.erfc` (the C library's erfc).
        for (x, want) in [
            (0.0, 1.0),
            (0.5, 0.479_500_122_186_953_5),
            (1.0, 0.157_299_207_050_285_13),
            (2.0, 0.004_677_734_981_047_265),
            (3.5, 7.430_983_723_414_128e-7),
            (-1.0, 1.842_700_792_949_715),
        ] {
            let got = erfc(x);
            assert!(((got - want) / want).abs() < 1.2e-7, "erfc({x}) = {got}, want {want}");
        }
    }

    #[test]
    fn two_proportion_z_test_against_hand_computed_values() {
        // 200/1000 vs 250/1000. By hand: p̂ = 450/2000 = 0.225,
        // SE = √(0.225·0.775·0.002) = 0.0186748, z = 0.05 / SE = 2.677398,
        // p = erfc(z/√2) = 0.0074196 (Python: math.erfc(2.677397763008329 /
        // math.sqrt(2)) = 0.007419649261025693; scipy's 2·norm.sf(z) is the same).
        let c = compare(prop(200, 1000), prop(250, 1000));
        assert!((c.z.expect("z") - 2.677_397_763).abs() < 1e-6, "{c:?}");
        assert!((c.confidence.expect("confidence") - (1.0 - 0.007_419_649_261)).abs() < 1e-7, "{c:?}");
        assert!((c.uplift.expect("uplift") - 0.25).abs() < 1e-12);
        // 30/400 vs 45/410: z = 1.706165, p = 0.0879773 (same source).
        let c = compare(prop(30, 400), prop(45, 410));
        assert!((c.z.expect("z") - 1.706_165_437).abs() < 1e-6, "{c:?}");
        assert!((c.confidence.expect("confidence") - (1.0 - 0.087_977_281_9)).abs() < 1e-7);
        // A worse variant: 10/100 vs 5/100: z = −1.342312, p = 0.1794948, uplift −50%.
        let c = compare(prop(10, 100), prop(5, 100));
        assert!((c.z.expect("z") + 1.342_312_110).abs() < 1e-6, "{c:?}");
        assert!((c.confidence.expect("confidence") - (1.0 - 0.179_494_818_4)).abs() < 1e-7);
        assert!((c.uplift.expect("uplift") + 0.5).abs() < 1e-12);
    }

    #[test]
    fn undefined_comparisons_are_none() {
        let none = compare(prop(0, 0), prop(5, 100));
        assert_eq!((none.uplift, none.confidence), (None, None), "nobody in the baseline");
        let none = compare(prop(5, 100), prop(0, 0));
        assert_eq!((none.uplift, none.confidence), (None, None), "nobody in the variant");
        let zero = compare(prop(0, 100), prop(5, 100));
        assert_eq!(zero.uplift, None, "a baseline rate of 0 has no relative uplift");
        assert!(zero.confidence.is_some());
        let flat = compare(prop(0, 100), prop(0, 100));
        assert_eq!((flat.uplift, flat.confidence), (None, None), "no conversions at all: no test");
    }
}
