//! The fuzz input as a source of choices: [`Bytes`] hands out integers,
//! flags and slices from the front of the input and zeros once it is used
//! up, so every input, however short, is a complete run (libFuzzer's
//! mutations then change decisions one at a time).

/// A reader of choices from the fuzz input.
pub struct Bytes<'a> {
    data: &'a [u8],
}

impl<'a> Bytes<'a> {
    /// Choices from `data`.
    pub fn new(data: &'a [u8]) -> Bytes<'a> {
        Bytes { data }
    }

    /// Whether the input is used up.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte (0 once the input is used up).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next two bytes, big-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    /// The next four bytes, big-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_be_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A flag from the next byte's low bit.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A value in `0..n` (0 if `n` is 0) from the next byte.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::from(self.u8()) % n
    }

    /// One of `choices` (which must not be empty).
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len())]
    }

    /// Up to `n` bytes from the input.
    pub fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// A length-prefixed slice: a length byte (times `scale`) then that
    /// many bytes of input (fewer if the input ends).
    pub fn slice(&mut self, scale: usize) -> &'a [u8] {
        let n = usize::from(self.u8()) * scale.max(1);
        self.take(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_order_then_zeros() {
        let mut b = Bytes::new(&[1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(b.u8(), 1);
        assert_eq!(b.u16(), 0x0203);
        assert_eq!(b.below(3), 4 % 3);
        assert_eq!(b.take(10), &[5, 6, 7]);
        assert!(b.is_empty());
        assert_eq!((b.u32(), b.bool(), b.below(0)), (0, false, 0));
    }
}
