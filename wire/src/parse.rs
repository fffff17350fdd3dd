use crate::frame::{Frame, IpVersion, Malformed};

pub(crate) fn peek_addresses(_frame: &[u8]) -> Option<(IpVersion, u128, u128)> {
    None
}

pub(crate) fn parse_frame(_frame: &[u8]) -> Result<Frame, Malformed> {
    Err(Malformed::EthernetTruncated)
}
