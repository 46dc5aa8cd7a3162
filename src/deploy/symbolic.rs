//! Which traced integers depend on the input size, and how. The tracer records sizes as
//! plain numbers (an upsampling's target size, a reshape's shape), so the exporter traces
//! the forward twice, at two input sizes chosen so that every product of the batch N and
//! the image sides H and W changes by a different ratio, and explains each number that
//! differs as `p/q · N^a · H^b · W^c`. Those become shape arithmetic in the ONNX graph.
use std::fmt;

/// The batch size and image sides of one trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    pub n: i64,
    pub h: i64,
    pub w: i64,
}

impl Dims {
    /// The two sizes traced for input multiple `m`: N 1 → 2, H 2m → 3m, W 2m → 5m, so
    /// that N, H, W and their products all change by different ratios (2, 3/2, 5/2, …).
    /// A fixed size keeps H and W and varies N alone.
    pub fn pair(m: i64, fixed: Option<(i64, i64)>) -> [Dims; 2] {
        match fixed {
            Some((h, w)) => [Dims { n: 1, h, w }, Dims { n: 2, h, w }],
            None => [Dims { n: 1, h: 2 * m, w: 2 * m }, Dims { n: 2, h: 3 * m, w: 5 * m }],
        }
    }

    fn get(&self, d: Dim) -> i64 {
        match d {
            Dim::N => self.n,
            Dim::H => self.h,
            Dim::W => self.w,
        }
    }
}

/// One of the input's free dimensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    N,
    H,
    W,
}

impl Dim {
    pub const ALL: [Dim; 3] = [Dim::N, Dim::H, Dim::W];

    /// Position in the input's N×3×H×W shape.
    pub fn axis(self) -> i64 {
        match self {
            Dim::N => 0,
            Dim::H => 2,
            Dim::W => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dim::N => "batch",
            Dim::H => "height",
            Dim::W => "width",
        }
    }
}

/// `num/den` times the product of `dims`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Expr {
    pub num: i64,
    pub den: i64,
    pub dims: Vec<Dim>,
}

impl Expr {
    pub fn eval(&self, d: &Dims) -> Option<i64> {
        let prod: i128 = self.dims.iter().map(|&x| d.get(x) as i128).product();
        let v = prod * self.num as i128;
        (v % self.den as i128 == 0).then(|| (v / self.den as i128) as i64)
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.dims.iter().map(|d| d.name()).collect();
        let mut s = names.join("*");
        if self.num != 1 {
            s = format!("{}*{s}", self.num);
        }
        if self.den != 1 {
            s = format!("{s}/{}", self.den);
        }
        f.write_str(&s)
    }
}

/// A traced integer: the same in both traces, or a function of the input size.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SymInt {
    Fixed(i64),
    Expr(Expr),
}

impl SymInt {
    pub fn fixed(&self) -> Option<i64> {
        match self {
            SymInt::Fixed(v) => Some(*v),
            SymInt::Expr(_) => None,
        }
    }
}

impl fmt::Display for SymInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SymInt::Fixed(v) => write!(f, "{v}"),
            SymInt::Expr(e) => write!(f, "{e}"),
        }
    }
}

fn gcd(a: i128, b: i128) -> i128 {
    if b == 0 {
        a.abs()
    } else {
        gcd(b, a % b)
    }
}

/// Explains values `v[0]`, `v[1]` taken at `at[0]`, `at[1]`; None when no product of the
/// varying dimensions (with a rational factor) fits both.
pub fn solve(v: [i64; 2], at: &[Dims; 2]) -> Option<SymInt> {
    if v[0] == v[1] {
        return Some(SymInt::Fixed(v[0]));
    }
    let varying: Vec<Dim> = Dim::ALL.into_iter().filter(|&d| at[0].get(d) != at[1].get(d)).collect();
    // Subsets of the varying dimensions, fewest first.
    let mut subsets: Vec<Vec<Dim>> = (1u32..(1 << varying.len()))
        .map(|mask| varying.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, &d)| d).collect())
        .collect();
    subsets.sort_by_key(|s: &Vec<Dim>| s.len());
    for dims in subsets {
        let prod0: i128 = dims.iter().map(|&d| at[0].get(d) as i128).product();
        let g = gcd(v[0] as i128, prod0);
        if g == 0 {
            continue;
        }
        let expr = Expr { num: (v[0] as i128 / g) as i64, den: (prod0 / g) as i64, dims };
        if expr.den > 0 && expr.eval(&at[1]) == Some(v[1]) {
            return Some(SymInt::Expr(expr));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_explains_sides_batch_and_products() {
        let at = Dims::pair(32, None);
        let e = |v0, v1| solve([v0, v1], &at).map(|s| s.to_string());
        assert_eq!(e(16, 16).as_deref(), Some("16"));
        assert_eq!(e(1, 2).as_deref(), Some("batch"));
        assert_eq!(e(16, 24).as_deref(), Some("height/4"));
        assert_eq!(e(16, 40).as_deref(), Some("width/4"));
        // H/4 · W/4, the pixels of a quarter-resolution map.
        assert_eq!(e(256, 960).as_deref(), Some("height*width/16"));
        assert_eq!(e(19 * 256, 2 * 19 * 960).as_deref(), Some("19*batch*height*width/16"));
        assert_eq!(e(5, 7), None);
    }

    #[test]
    fn fixed_size_varies_the_batch_alone() {
        let at = Dims::pair(32, Some((64, 96)));
        assert_eq!(solve([64, 64], &at), Some(SymInt::Fixed(64)));
        assert_eq!(solve([3, 6], &at).map(|s| s.to_string()).as_deref(), Some("3*batch"));
        assert_eq!(solve([16, 24], &at), None);
    }
}
