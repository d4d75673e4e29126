# swarmimager initramfs: the network settings of the kernel command line, checked.
# Sourced by /init (and by test/initrd.test.ts under busybox sh); defines functions only.
#
#   si.ip=ADDR/PREFIX     a static address instead of DHCP
#   si.gw=ADDR            its default route
#   si.dns=ADDR[,ADDR]    its name servers
#   IPADDR=ADDR NETMASK=MASK GATEWAY=ADDR   SystemImager's names for the same (si.* wins)
#
# IPv4 only, as SystemImager's were.

# 0 when $1 is a dotted IPv4 address (four decimal octets, no leading zeros).
is_ipv4() {
    case "$1" in ''|*[!0-9.]*|.*|*.|*..*) return 1 ;; esac
    _ifs=$IFS; IFS=.
    # shellcheck disable=SC2086 # split on the dots
    set -- $1
    IFS=$_ifs
    [ $# -eq 4 ] || return 1
    for _octet in "$@"; do
        case "$_octet" in [0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5]) ;; *) return 1 ;; esac
    done
}

# Prints the prefix length of a netmask such as 255.255.254.0; fails for one with holes.
mask_to_prefix() {
    is_ipv4 "$1" || return 1
    _ifs=$IFS; IFS=.
    # shellcheck disable=SC2086 # split on the dots
    set -- $1
    IFS=$_ifs
    _prefix=0; _ended=
    for _octet in "$@"; do
        case "$_octet" in
            255) [ -n "$_ended" ] && return 1; _prefix=$((_prefix + 8)); continue ;;
            254) _bits=7 ;; 252) _bits=6 ;; 248) _bits=5 ;; 240) _bits=4 ;;
            224) _bits=3 ;; 192) _bits=2 ;; 128) _bits=1 ;; 0) _bits=0 ;;
            *) return 1 ;;
        esac
        [ -n "$_ended" ] && [ "$_bits" != 0 ] && return 1
        _prefix=$((_prefix + _bits)); _ended=1
    done
    echo "$_prefix"
}

# net_settings WORD...: reads the words of a kernel command line. Sets NET_MODE (dhcp
# or static) and, for static, NET_IP, NET_PREFIX, NET_GW and NET_DNS (space-separated).
# On a mistake, sets NET_ERROR to what is wrong and where, and returns 1.
net_settings() {
    _ip=; _gw=; _dns=; _ipaddr=; _netmask=; _gateway=
    for _word in "$@"; do
        case "$_word" in
            si.ip=*) _ip=${_word#*=} ;;
            si.gw=*) _gw=${_word#*=} ;;
            si.dns=*) _dns=${_word#*=} ;;
            IPADDR=*) _ipaddr=${_word#*=} ;;
            NETMASK=*) _netmask=${_word#*=} ;;
            GATEWAY=*) _gateway=${_word#*=} ;;
        esac
    done
    NET_MODE=dhcp; NET_IP=; NET_PREFIX=; NET_GW=; NET_DNS=; NET_ERROR=
    if [ -z "$_ip" ] && [ -n "$_ipaddr" ]; then
        if [ -z "$_netmask" ]; then NET_ERROR="IPADDR=$_ipaddr needs NETMASK= (or give si.ip=ADDR/PREFIX)"; return 1; fi
        if ! _bits=$(mask_to_prefix "$_netmask"); then NET_ERROR="NETMASK=$_netmask: expected a netmask such as 255.255.255.0"; return 1; fi
        _ip="$_ipaddr/$_bits"
        _from="IPADDR=$_ipaddr"
    else
        _from="si.ip=$_ip"
    fi
    [ -z "$_gw" ] && _gw=$_gateway
    if [ -z "$_ip" ]; then
        if [ -n "$_gw$_dns" ]; then NET_ERROR="si.gw, si.dns and GATEWAY go with a static address: add si.ip=ADDR/PREFIX (or IPADDR= and NETMASK=)"; return 1; fi
        return 0
    fi
    _addr=${_ip%/*}; _len=${_ip#*/}
    if [ "$_addr" = "$_ip" ]; then NET_ERROR="si.ip=$_ip: expected ADDR/PREFIX, e.g. 10.0.0.5/24"; return 1; fi
    if ! is_ipv4 "$_addr"; then NET_ERROR="$_from: $_addr is not an IPv4 address"; return 1; fi
    case "$_len" in [0-9]|[12][0-9]|3[0-2]) ;; *) NET_ERROR="$_from: prefix /$_len is not 0 to 32"; return 1 ;; esac
    if [ -n "$_gw" ] && ! is_ipv4 "$_gw"; then NET_ERROR="gateway $_gw (si.gw or GATEWAY) is not an IPv4 address"; return 1; fi
    NET_DNS=
    _ifs=$IFS; IFS=,
    for _server in $_dns; do
        IFS=$_ifs
        if ! is_ipv4 "$_server"; then NET_ERROR="si.dns=$_dns: $_server is not an IPv4 address"; return 1; fi
        NET_DNS="${NET_DNS:+$NET_DNS }$_server"
    done
    IFS=$_ifs
    NET_MODE=static; NET_IP=$_addr; NET_PREFIX=$_len; NET_GW=$_gw
}
