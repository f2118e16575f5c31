use super::*;

#[test]
fn kernel_times_before_1970_keep_their_fraction() {
    // fuser 0.18 turns the kernel's {-6 s, 500000000 ns} (-5.5 s) into -6.5 s.
    let from_fuser = UNIX_EPOCH - Duration::new(6, 500_000_000);
    assert_eq!(
        kernel_time(from_fuser),
        UNIX_EPOCH - Duration::from_millis(5_500)
    );
    for t in [
        UNIX_EPOCH - Duration::from_secs(5),
        UNIX_EPOCH - Duration::from_secs(315_619_140),
        UNIX_EPOCH,
        UNIX_EPOCH + Duration::new(4_102_444_800, 250_000_000),
    ] {
        assert_eq!(kernel_time(t), t);
    }
}
