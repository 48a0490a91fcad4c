"""CRUSH mapper: a pure function from (map, rule, x) to an ordered device list.

This is the read-only half of placement (the mutating half is
``sds.crush.builder``).  Rules are ``take`` / ``choose_firstn`` /
``chooseleaf_firstn`` / ``emit`` as in Ceph (``num <= 0`` means
``result_max + num``); buckets are straw2.

What is Ceph-identical: the hashes (``hash32_3``), Ceph's fixed-point
``crush_ln`` and its tables, and the straw2 draw of a device:
``ln(u) / weight`` with ``u = hash32_3(x, device, 0) & 0xffff``, computed in
integers only so every process agrees.

What deliberately differs: Ceph's ``crush_choose_firstn`` picks replica
``rep`` by a fresh descent with ``r = rep + ftotal`` and re-descends on a
collision or an out device.  Those retries make placement depend on which
*other* items collided, so adding or reweighting one OSD also moves a few
replicas between unrelated OSDs (measured on 10 hosts x 1 OSD, 1000 PGs x 3:
18 of 3000 replicas on adding an 11th OSD, 12 and 57 on halving or doubling
one weight).  SDS instead runs one exponential race per input
(Efraimidis-Spirakis weighted sampling without replacement):

* every usable device under the ``take`` bucket draws once for ``x`` (the
  straw2 draw above, ``r`` fixed at 0, *not* the replica index); a device's
  draw weight is its CRUSH weight x ``reweight / 0x10000``, so a partial
  reweight lowers only its own draw instead of Ceph's probabilistic
  ``is_out`` rejection; reweight 0 (out) or weight 0 means not usable;
* the devices are ranked best draw first (ties by lower id) and walked in
  that order; ``choose[leaf]_firstn N type T`` keeps the first N devices
  whose type-T ancestor (the failure domain) is not already used, and emits
  the devices (``chooseleaf``) or their domains (``choose``).  A domain's
  rank is thus the best draw among its usable devices and its leaf is that
  device, so domains without a usable device are skipped, never retried.
  The best draw of devices with weights w_i is distributed like one straw2
  draw with weight sum(w_i), so the expected share of every bucket and
  device is what straw2 with bucket weight = sum of children gives (the
  builder keeps bucket weights that way); interior bucket weights only
  matter as zero (never chosen) or not.

Consequences, checked by tests/unit/test_crush.py: adding a device can only
put that device in place of one previous member of a result; changing one
device's weight or reweight only moves replicas to or from that device (the
other devices keep their draws and relative order); no two results share a
failure domain; the result holds min(N, usable domains) items, in rank order
(the primary is the best draw).  A later step below a chosen bucket reuses
the same draws, so ``choose host`` + ``chooseleaf osd`` equals ``chooseleaf
host``.  ``choose_total_tries`` in a map is accepted and ignored: nothing is
retried.

The result may be shorter than ``result_max`` when the hierarchy cannot
satisfy the rule (for example size 3 with failure domain ``host`` and only
two hosts): callers must treat a short list as "degraded", not as an error.

Cost: one hash per device under the ``take`` bucket per input (a Ceph
descent hashes every child of each bucket it crosses, once per try).
Compile a ``CrushMap`` once with :class:`CompiledCrush` (or let
:func:`do_rule` cache it) so repeated mappings never rescan the protobuf.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

from sds.crush.hash import hash32_3
from sds.proto.crush_pb2 import CrushMap

__all__ = [
    "DEFAULT_CHOOSE_TOTAL_TRIES",
    "WEIGHT_ONE",
    "CompiledCrush",
    "compile_crush",
    "crush_ln",
    "do_rule",
]

WEIGHT_ONE = 0x10000  # 1.0 in 16.16 fixed point
DEFAULT_CHOOSE_TOTAL_TRIES = 50  # Ceph's default; maps may carry it, nothing retries
_LN_ONE = 0x1000000000000  # crush_ln() scale: 2**48 corresponds to ln == 0

# Ceph's crush_ln lookup tables (src/crush/crush_ln_table.h), reproduced
# value for value, including the entries of __LL_tbl that deviate from the
# formula: straw2 results only match Ceph's if these do.
#   _RH_LH[2k]   ~ 2**48 / (1 + k/128)
#   _RH_LH[2k+1] ~ 2**48 * log2(1 + k/128)
#   _LL[k]       ~ 2**48 * log2(1 + k/2**15)
# fmt: off
_RH_LH = (
    0x0001000000000000, 0x0000000000000000, 0x0000FE03F80FE040, 0x000002DFCA16DDE1,
    0x0000FC0FC0FC0FC1, 0x000005B9E5A170B4, 0x0000FA232CF25214, 0x0000088E68EA899A,
    0x0000F83E0F83E0F9, 0x00000B5D69BAC77E, 0x0000F6603D980F67, 0x00000E26FD5C8555,
    0x0000F4898D5F85BC, 0x000010EB389FA29F, 0x0000F2B9D6480F2C, 0x000013AA2FDD27F1,
    0x0000F0F0F0F0F0F1, 0x00001663F6FAC913, 0x0000EF2EB71FC435, 0x00001918A16E4633,
    0x0000ED7303B5CC0F, 0x00001BC84240ADAB, 0x0000EBBDB2A5C162, 0x00001E72EC117FA5,
    0x0000EA0EA0EA0EA1, 0x00002118B119B4F3, 0x0000E865AC7B7604, 0x000023B9A32EAA56,
    0x0000E6C2B4481CD9, 0x00002655D3C4F15C, 0x0000E525982AF70D, 0x000028ED53F307EE,
    0x0000E38E38E38E39, 0x00002B803473F7AD, 0x0000E1FC780E1FC8, 0x00002E0E85A9DE04,
    0x0000E070381C0E08, 0x0000309857A05E07, 0x0000DEE95C4CA038, 0x0000331DBA0EFCE1,
    0x0000DD67C8A60DD7, 0x0000359EBC5B69D9, 0x0000DBEB61EED19D, 0x0000381B6D9BB29B,
    0x0000DA740DA740DB, 0x00003A93DC9864B2, 0x0000D901B2036407, 0x00003D0817CE9CD4,
    0x0000D79435E50D7A, 0x00003F782D7204D0, 0x0000D62B80D62B81, 0x000041E42B6EC0C0,
    0x0000D4C77B03531E, 0x0000444C1F6B4C2D, 0x0000D3680D3680D4, 0x000046B016CA47C1,
    0x0000D20D20D20D21, 0x000049101EAC381C, 0x0000D0B69FCBD259, 0x00004B6C43F1366A,
    0x0000CF6474A8819F, 0x00004DC4933A9337, 0x0000CE168A772509, 0x0000501918EC6C11,
    0x0000CCCCCCCCCCCD, 0x00005269E12F346E, 0x0000CB8727C065C4, 0x000054B6F7F1325A,
    0x0000CA4587E6B750, 0x0000570068E7EF5A, 0x0000C907DA4E8712, 0x000059463F919DEE,
    0x0000C7CE0C7CE0C8, 0x00005B8887367433, 0x0000C6980C6980C7, 0x00005DC74AE9FBEC,
    0x0000C565C87B5F9E, 0x00006002958C5871, 0x0000C4372F855D83, 0x0000623A71CB82C8,
    0x0000C30C30C30C31, 0x0000646EEA247C5C, 0x0000C1E4BBD595F7, 0x000066A008E4788C,
    0x0000C0C0C0C0C0C1, 0x000068CDD829FD81, 0x0000BFA02FE80BFB, 0x00006AF861E5FC7D,
    0x0000BE82FA0BE830, 0x00006D1FAFDCE20A, 0x0000BD6910470767, 0x00006F43CBA79E40,
    0x0000BC52640BC527, 0x00007164BEB4A56D, 0x0000BB3EE721A54E, 0x000073829248E961,
    0x0000BA2E8BA2E8BB, 0x0000759D4F80CBA8, 0x0000B92143FA36F6, 0x000077B4FF5108D9,
    0x0000B81702E05C0C, 0x000079C9AA879D53, 0x0000B70FBB5A19BF, 0x00007BDB59CCA388,
    0x0000B60B60B60B61, 0x00007DEA15A32C1B, 0x0000B509E68A9B95, 0x00007FF5E66A0FFE,
    0x0000B40B40B40B41, 0x000081FED45CBCCB, 0x0000B30F63528918, 0x00008404E793FB81,
    0x0000B21642C8590C, 0x000086082806B1D5, 0x0000B11FD3B80B12, 0x000088089D8A9E47,
    0x0000B02C0B02C0B1, 0x00008A064FD50F2A, 0x0000AF3ADDC680B0, 0x00008C01467B94BB,
    0x0000AE4C415C9883, 0x00008DF988F4AE80, 0x0000AD602B580AD7, 0x00008FEF1E987409,
    0x0000AC7691840AC8, 0x000091E20EA1393E, 0x0000AB8F69E2835A, 0x000093D2602C2E5F,
    0x0000AAAAAAAAAAAB, 0x000095C01A39FBD6, 0x0000A9C84A47A080, 0x000097AB43AF59F9,
    0x0000A8E83F5717C1, 0x00009993E355A4E5, 0x0000A80A80A80A81, 0x00009B79FFDB6C8B,
    0x0000A72F0539782A, 0x00009D5D9FD5010B, 0x0000A655C4392D7C, 0x00009F3EC9BCFB80,
    0x0000A57EB50295FB, 0x0000A11D83F4C355, 0x0000A4A9CF1D9684, 0x0000A2F9D4C51039,
    0x0000A3D70A3D70A4, 0x0000A4D3C25E68DC, 0x0000A3065E3FAE7D, 0x0000A6AB52D99E76,
    0x0000A237C32B16D0, 0x0000A8808C384547, 0x0000A16B312EA8FD, 0x0000AA5374652A1C,
    0x0000A0A0A0A0A0A1, 0x0000AC241134C4E9, 0x00009FD809FD80A0, 0x0000ADF26865A8A1,
    0x00009F1165E72549, 0x0000AFBE7FA0F04D, 0x00009E4CAD23DD60, 0x0000B1885C7AA982,
    0x00009D89D89D89D9, 0x0000B35004723C46, 0x00009CC8E160C3FC, 0x0000B5157CF2D078,
    0x00009C09C09C09C1, 0x0000B6D8CB53B0CA, 0x00009B4C6F9EF03B, 0x0000B899F4D8AB63,
    0x00009A90E7D95BC7, 0x0000BA58FEB2703A, 0x000099D722DABDE6, 0x0000BC15EDFEED32,
    0x0000991F1A515886, 0x0000BDD0C7C9A817, 0x00009868C809868D, 0x0000BF89910C1678,
    0x000097B425ED097C, 0x0000C1404EADF383, 0x000097012E025C05, 0x0000C2F5058593D9,
    0x0000964FDA6C0965, 0x0000C4A7BA58377C, 0x000095A02568095B, 0x0000C65871DA59DD,
    0x000094F2094F2095, 0x0000C80730B00016, 0x0000944580944581, 0x0000C9B3FB6D0559,
    0x0000939A85C4093A, 0x0000CB5ED69565AF, 0x000092F113840498, 0x0000CD07C69D8702,
    0x0000924924924925, 0x0000CEAECFEA8085, 0x000091A2B3C4D5E7, 0x0000D053F6D26089,
    0x000090FDBC090FDC, 0x0000D1F73F9C70C0, 0x0000905A38633E07, 0x0000D398AE817906,
    0x00008FB823EE08FC, 0x0000D53847AC00A6, 0x00008F1779D9FDC4, 0x0000D6D60F388E41,
    0x00008E78356D1409, 0x0000D8720935E643, 0x00008DDA5202376A, 0x0000DA0C39A54804,
    0x00008D3DCB08D3DD, 0x0000DBA4A47AA996, 0x00008CA29C046515, 0x0000DD3B4D9CF24B,
    0x00008C08C08C08C1, 0x0000DED038E633F3, 0x00008B70344A139C, 0x0000E0636A23E2EE,
    0x00008AD8F2FBA939, 0x0000E1F4E5170D02, 0x00008A42F870566A, 0x0000E384AD748F0E,
    0x000089AE4089AE41, 0x0000E512C6E54998, 0x0000891AC73AE982, 0x0000E69F35065448,
    0x0000888888888889, 0x0000E829FB693044, 0x000087F78087F781, 0x0000E9B31D93F98E,
    0x00008767AB5F34E5, 0x0000EB3A9F019750, 0x000086D905447A35, 0x0000ECC08321EB30,
    0x0000864B8A7DE6D2, 0x0000EE44CD59FFAB, 0x000085BF37612CEF, 0x0000EFC781043579,
    0x0000853408534086, 0x0000F148A170700A, 0x000084A9F9C8084B, 0x0000F2C831E44116,
    0x0000842108421085, 0x0000F446359B1353, 0x0000839930523FBF, 0x0000F5C2AFC65447,
    0x000083126E978D50, 0x0000F73DA38D9D4A, 0x0000828CBFBEB9A1, 0x0000F8B7140EDBB1,
    0x0000820820820821, 0x0000FA2F045E7832, 0x000081848DA8FAF1, 0x0000FBA577877D7D,
    0x0000810204081021, 0x0000FD1A708BBE11, 0x0000808080808081, 0x0000FE8DF263F957,
    0x0000800000000000, 0x0000FFFF00000000,
)

_LL = (
    0x0000000000000000, 0x00000002E2A60A00, 0x000000070CB64EC5, 0x00000009EF50CE67,
    0x0000000CD1E588FD, 0x0000000FB4747E9C, 0x0000001296FDAF5E, 0x0000001579811B58,
    0x000000185BFEC2A1, 0x0000001B3E76A552, 0x0000001E20E8C380, 0x0000002103551D43,
    0x00000023E5BBB2B2, 0x00000026C81C83E4, 0x00000029AA7790F0, 0x0000002C8CCCD9ED,
    0x0000002F6F1C5EF2, 0x0000003251662017, 0x0000003533AA1D71, 0x0000003815E8571A,
    0x0000003AF820CD26, 0x0000003DDA537FAE, 0x00000040BC806EC8, 0x000000439EA79A8C,
    0x0000004680C90310, 0x0000004962E4A86C, 0x0000004C44FA8AB6, 0x0000004F270AAA06,
    0x0000005209150672, 0x00000054EB19A013, 0x00000057CD1876FD, 0x0000005AAF118B4A,
    0x0000005D9104DD0F, 0x0000006072F26C64, 0x0000006354DA3960, 0x0000006636BC441A,
    0x0000006918988CA8, 0x0000006BFA6F1322, 0x0000006EDC3FD79F, 0x00000071BE0ADA35,
    0x000000749FD01AFD, 0x00000077818F9A0C, 0x0000007A6349577A, 0x0000007D44FD535E,
    0x0000008026AB8DCE, 0x00000083085406E3, 0x00000085E9F6BEB2, 0x00000088CB93B552,
    0x0000008BAD2AEADC, 0x0000008E8EBC5F65, 0x0000009170481305, 0x0000009451CE05D3,
    0x00000097334E37E5, 0x0000009A14C8A953, 0x0000009CF63D5A33, 0x0000009FD7AC4A9D,
    0x000000A2B07F3458, 0x000000A59A78EA6A, 0x000000A87BD699FB, 0x000000AB5D2E8970,
    0x000000AE3E80B8E3, 0x000000B11FCD2869, 0x000000B40113D818, 0x000000B6E254C80A,
    0x000000B9C38FF853, 0x000000BCA4C5690C, 0x000000BF85F51A4A, 0x000000C2671F0C26,
    0x000000C548433EB6, 0x000000C82961B211, 0x000000CB0A7A664D, 0x000000CDEB8D5B82,
    0x000000D0CC9A91C8, 0x000000D3ADA20933, 0x000000D68EA3C1DD, 0x000000D96F9FBBDB,
    0x000000DC5095F744, 0x000000DF31867430, 0x000000E2127132B5, 0x000000E4F35632EA,
    0x000000E7D43574E6, 0x000000EAB50EF8C1, 0x000000ED95E2BE90, 0x000000F076B0C66C,
    0x000000F35779106A, 0x000000F6383B9CA2, 0x000000F918F86B2A, 0x000000FBF9AF7C1A,
    0x000000FEDA60CF88, 0x00000101BB0C658C, 0x000001049BB23E3C, 0x000001077C5259AF,
    0x0000010A5CECB7FC, 0x0000010D3D81593A, 0x000001101E103D7F, 0x00000112FE9964E4,
    0x00000115DF1CCF7E, 0x00000118BF9A7D64, 0x0000011BA0126EAD, 0x0000011E8084A371,
    0x0000012160F11BC6, 0x000001244157D7C3, 0x0000012721B8D77F, 0x0000012A02141B10,
    0x0000012CE269A28E, 0x0000012FC2B96E0F, 0x00000132A3037DAA, 0x000001358347D177,
    0x000001386386698C, 0x0000013B43BF45FF, 0x0000013E23F266E9, 0x00000141041FCC5E,
    0x00000143E4477678, 0x00000146C469654B, 0x00000149A48598F0, 0x0000014C849C117C,
    0x0000014F64ACCF08, 0x0000015244B7D1A9, 0x0000015524BD1976, 0x0000015804BCA687,
    0x0000015AE4B678F2, 0x0000015DC4AA90CE, 0x00000160A498EE31, 0x0000016384819134,
    0x00000166646479EC, 0x000001694441A870, 0x0000016C24191CD7, 0x0000016DF6CA19BD,
    0x00000171E3B6D7AA, 0x00000174C37D1E44, 0x00000177A33DAB1C, 0x0000017A82F87E49,
    0x0000017D62AD97E2, 0x00000180425CF7FE, 0x00000182B07F3458, 0x0000018601AA8C19,
    0x00000188E148C046, 0x0000018BC0E13B52, 0x0000018EA073FD52, 0x000001918001065D,
    0x000001945F88568B, 0x000001973F09EDF2, 0x0000019A1E85CCAA, 0x0000019CFDFBF2C8,
    0x0000019FDD6C6063, 0x000001A2BCD71593, 0x000001A59C3C126E, 0x000001A87B9B570B,
    0x000001AB5AF4E380, 0x000001AE3A48B7E5, 0x000001B11996D450, 0x000001B3F8DF38D9,
    0x000001B6D821E595, 0x000001B9B75EDA9B, 0x000001BC96961803, 0x000001BF75C79DE3,
    0x000001C254F36C51, 0x000001C534198365, 0x000001C81339E336, 0x000001CAF2548BD9,
    0x000001CDD1697D67, 0x000001D0B078B7F5, 0x000001D38F823B9A, 0x000001D66E86086D,
    0x000001D94D841E86, 0x000001DC2C7C7DF9, 0x000001DF0B6F26DF, 0x000001E1EA5C194E,
    0x000001E4C943555D, 0x000001E7A824DB23, 0x000001EA8700AAB5, 0x000001ED65D6C42B,
    0x000001F044A7279D, 0x000001F32371D51F, 0x000001F60236CCCA, 0x000001F8E0F60EB3,
    0x000001FBBFAF9AF3, 0x000001FE9E63719E, 0x000002017D1192CC, 0x000002045BB9FE94,
    0x000002073A5CB50D, 0x00000209C06E6212, 0x0000020CF791026A, 0x0000020FD622997C,
    0x00000212B07F3458, 0x000002159334A8D8, 0x0000021871B52150, 0x0000021B502FE517,
    0x0000021D6A73A78F, 0x000002210D144EEE, 0x00000223EB7DF52C, 0x00000226C9E1E713,
    0x00000229A84024BB, 0x0000022C23679B4E, 0x0000022F64EB83A8, 0x000002324338A51B,
    0x00000235218012A9, 0x00000237FFC1CC69, 0x0000023A2C3B0EA4, 0x0000023D13EE805B,
    0x0000024035E9221F, 0x00000243788FAF25, 0x0000024656B4E735, 0x00000247ED646BFE,
    0x0000024C12EE3D98, 0x0000024EF1025C1A, 0x00000251CF10C799, 0x0000025492644D65,
    0x000002578B1C85EE, 0x0000025A6919D8F0, 0x0000025D13EE805B, 0x0000026025036716,
    0x0000026296453882, 0x00000265E0D62B53, 0x00000268BEB701F3, 0x0000026B9C92265E,
    0x0000026D32F798A9, 0x00000271583758EB, 0x000002743601673B, 0x0000027713C5C3B0,
    0x00000279F1846E5F, 0x0000027CCF3D6761, 0x0000027E6580AECB, 0x000002828A9E44B3,
    0x0000028568462932, 0x00000287BDBF5255, 0x0000028B2384DE4A, 0x0000028D13EE805B,
    0x0000029035E9221F, 0x0000029296453882, 0x0000029699BDFB61, 0x0000029902A37AAB,
    0x0000029C54B864C9, 0x0000029DEABD1083, 0x000002A20F9C0BB5, 0x000002A4C7605D61,
    0x000002A7BDBF5255, 0x000002A96056DAFC, 0x000002AC3DAF14EF, 0x000002AF1B019ECA,
    0x000002B296453882, 0x000002B5D022D80F, 0x000002B8FA471CB3, 0x000002BA9012E713,
    0x000002BD6D4901CC, 0x000002C04A796CF6, 0x000002C327A428A6, 0x000002C61A5E8F4C,
    0x000002C8E1E891F6, 0x000002CBBF023FC2, 0x000002CE9C163E6E, 0x000002D179248E13,
    0x000002D4562D2EC6, 0x000002D73330209D, 0x000002DA102D63B0, 0x000002DCED24F814,
)
# fmt: on


def crush_ln(xin: int) -> int:
    """Ceph's ``crush_ln``: about ``2**44 * log2(xin + 1)`` for ``0 <= xin <= 0xffff``."""
    x = xin + 1
    iexpon = 15
    if not x & 0x18000:
        # Normalise so the top set bit is bit 15 (Ceph: clz(x) - 16 bits).
        bits = 16 - (x & 0x1FFFF).bit_length()
        x <<= bits
        iexpon = 15 - bits
    index1 = (x >> 8) << 1
    rh = _RH_LH[index1 - 256]  # ~ 2**56 / index1
    lh = _RH_LH[index1 + 1 - 256]  # ~ 2**48 * log2(index1 / 256)
    xl64 = (x * rh) >> 48
    ll = _LL[xl64 & 0xFF]
    return (iexpon << 44) + ((lh + ll) >> 4)


def _build_neg_ln() -> tuple[int, ...]:
    table = tuple(_LN_ONE - crush_ln(u) for u in range(0x10000))
    assert min(table) >= 0
    return table


# _NEG_LN[u] == -(crush_ln(u) - 2**48) >= 0.  A straw2 draw is
# div64_s64(crush_ln(u) - 2**48, weight), which truncates toward zero, so
# draw == -(_NEG_LN[u] // weight) and the winner has the smallest quotient.
_NEG_LN: tuple[int, ...] = _build_neg_ln()

# _NEG_LN scaled by 2**16, so a draw can divide by CRUSH weight x reweight
# (16.16 x 16.16) and still equal Ceph's straw2 quotient when reweight is 1.0:
# (n << 16) // (w << 16) == n // w.
_NEG_LN16: tuple[int, ...] = tuple(v << 16 for v in _NEG_LN)

# The hash's third input.  Ceph uses the replica index plus retries here; SDS
# draws once per device and input (see the module docstring).
_DRAW_R = 0

_OP_TAKE = 0
_OP_CHOOSE = 1
_OP_CHOOSELEAF = 2
_OP_EMIT = 3
_OPS = {
    "take": _OP_TAKE,
    "choose_firstn": _OP_CHOOSE,
    "chooseleaf_firstn": _OP_CHOOSELEAF,
    "emit": _OP_EMIT,
}


class _Bucket:
    """A bucket reduced to what the mapper reads."""

    __slots__ = ("id", "type_id", "items", "pairs")

    def __init__(self, bucket_id: int, type_id: int, items: Sequence[tuple[int, int]]):
        self.id = bucket_id
        self.type_id = type_id
        self.items = tuple(item for item, _ in items)
        # Weight-0 items are never chosen (nor anything below them).
        self.pairs = tuple((item, weight) for item, weight in items if weight > 0)


class CompiledCrush:
    """Lookup structures for one CRUSH map; immutable once built.

    Build one per map version and reuse it for every mapping.  Raises
    ``ValueError`` for maps the mapper cannot run safely (unknown types or
    ops, dangling item ids, cycles).
    """

    __slots__ = ("types", "type_ids", "buckets", "max_devices", "rules", "names", "_races")

    def __init__(self, crush: CrushMap):
        self.types: tuple[str, ...] = tuple(crush.types) or ("osd",)
        self.type_ids = {name: i for i, name in enumerate(self.types)}
        device_ids = {d.id for d in crush.devices}
        for b in crush.buckets:
            device_ids.update(it.id for it in b.items if it.id >= 0)
        self.max_devices = max(device_ids) + 1 if device_ids else 0
        self.names: dict[int, str] = {d.id: d.name for d in crush.devices}
        self.buckets: dict[int, _Bucket] = {}
        for b in crush.buckets:
            if b.id >= 0:
                raise ValueError(f"bucket {b.name!r} has non-negative id {b.id}")
            if b.id in self.buckets:
                raise ValueError(f"duplicate bucket id {b.id}")
            type_id = self.type_ids.get(b.type)
            if not type_id:  # unknown, or the device type (index 0)
                raise ValueError(f"bucket {b.name!r} has invalid type {b.type!r}")
            self.buckets[b.id] = _Bucket(b.id, type_id, [(it.id, it.weight) for it in b.items])
            self.names[b.id] = b.name
        self._check_children()
        self.rules: dict[int, tuple[tuple[int, int, int], ...]] = {}
        for rule in crush.rules:
            self.rules[rule.id] = tuple(self._compile_step(rule.name, s) for s in rule.steps)
        # (take bucket, domain type) -> ((device, weight << 16, domain), ...)
        self._races: dict[tuple[int, int], tuple[tuple[int, int, int], ...]] = {}

    def _check_children(self) -> None:
        parents: dict[int, int] = {}
        for b in self.buckets.values():
            for item in b.items:
                if item < 0 and item not in self.buckets:
                    raise ValueError(f"bucket {b.id} contains unknown bucket {item}")
        for b in self.buckets.values():
            for item in b.items:
                if item < 0:
                    if item in parents:
                        raise ValueError(f"bucket {item} has two parents")
                    parents[item] = b.id
        for start in self.buckets:  # walk up; a cycle never reaches a root
            seen = {start}
            node = start
            while node in parents:
                node = parents[node]
                if node in seen:
                    raise ValueError(f"cycle in CRUSH hierarchy at bucket {node}")
                seen.add(node)

    def _compile_step(self, rule_name: str, step) -> tuple[int, int, int]:
        op = _OPS.get(step.op)
        if op is None:
            raise ValueError(f"rule {rule_name!r}: unsupported step {step.op!r}")
        if op == _OP_TAKE:
            if step.item not in self.buckets and not 0 <= step.item < self.max_devices:
                raise ValueError(f"rule {rule_name!r}: take of unknown item {step.item}")
            return (op, step.item, 0)
        if op in (_OP_CHOOSE, _OP_CHOOSELEAF):
            type_id = self.type_ids.get(step.type)
            if type_id is None:
                raise ValueError(f"rule {rule_name!r}: unknown type {step.type!r}")
            return (op, step.num, type_id)
        return (op, 0, 0)

    def _race(self, take: int, type_id: int) -> tuple[tuple[int, int, int], ...]:
        """The devices racing for a ``choose* type_id`` step below bucket ``take``.

        Each entry is ``(device, crush weight << 16, failure domain)``: the
        domain is the device's nearest ancestor of ``type_id`` strictly below
        ``take`` (the device itself for type 0).  Devices without such an
        ancestor, or below a weight-0 item, never race.
        """
        key = (take, type_id)
        race = self._races.get(key)
        if race is not None:
            return race
        entries: list[tuple[int, int, int]] = []
        seen: set[int] = set()
        buckets = self.buckets
        stack: list[tuple[int, int | None]] = [(take, None)]
        while stack:
            bucket_id, domain = stack.pop()
            for item, weight in buckets[bucket_id].pairs:
                if item >= 0:
                    dom = item if type_id == 0 else domain
                    if dom is not None and item not in seen:
                        seen.add(item)
                        entries.append((item, weight << 16, dom))
                    continue
                child = buckets[item]
                if domain is None and type_id != 0 and child.type_id == type_id:
                    stack.append((item, item))
                else:
                    stack.append((item, domain))
        race = tuple(entries)
        self._races[key] = race
        return race

    # -- mapping ---------------------------------------------------------

    def do_rule(
        self,
        rule_id: int,
        x: int,
        result_max: int,
        reweights: Mapping[int, int] | None = None,
    ) -> list[int]:
        """Map input ``x`` through rule ``rule_id`` to at most ``result_max`` items.

        ``reweights`` maps device id to 16.16 reweight (values above 1.0
        count as 1.0); a device missing from it is out.  ``None`` means every
        device is fully in.  An unknown rule maps to ``[]`` (as in Ceph), so
        a bad pool shows up as inactive PGs rather than crashing the daemons
        that compute placement.
        """
        steps = self.rules.get(rule_id)
        if steps is None or result_max <= 0:
            return []
        x &= 0xFFFFFFFF
        result: list[int] = []
        work: list[int] = []
        for op, arg1, arg2 in steps:
            if op == _OP_TAKE:
                work = [arg1]
            elif op == _OP_EMIT:
                result.extend(work[: result_max - len(result)])
                work = []
            else:
                out_all: list[int] = []
                numrep = arg1 if arg1 > 0 else arg1 + result_max
                for take in work:
                    count = min(numrep, result_max - len(out_all))
                    if count <= 0 or take not in self.buckets:
                        continue
                    out_all.extend(
                        self._choose(take, arg2, op == _OP_CHOOSELEAF, count, x, reweights)
                    )
                work = out_all
        return result

    def _choose(self, take, type_id, leaf, count, x, reweights) -> list[int]:
        """The first ``count`` distinct failure domains in draw order below ``take``.

        Returns the winning device of each domain (``leaf``) or the domain.
        """
        neg_ln = _NEG_LN16
        draws: list[tuple[int, int, int]] = []
        if reweights is None:
            for dev, w16, dom in self._race(take, type_id):
                draws.append((neg_ln[hash32_3(x, dev, _DRAW_R) & 0xFFFF] // w16, dev, dom))
        else:
            for dev, w16, dom in self._race(take, type_id):
                rw = reweights.get(dev, 0)
                if rw <= 0:
                    continue  # out
                if rw < WEIGHT_ONE:
                    w16 = (w16 >> 16) * rw
                draws.append((neg_ln[hash32_3(x, dev, _DRAW_R) & 0xFFFF] // w16, dev, dom))
        draws.sort()  # smallest quotient == best straw2 draw; ties: lower id
        out: list[int] = []
        if type_id == 0:  # every device is its own domain
            for _, dev, _ in draws[:count]:
                out.append(dev)
            return out
        used: set[int] = set()
        for _, dev, dom in draws:
            if dom not in used:
                used.add(dom)
                out.append(dev if leaf else dom)
                if len(out) == count:
                    break
        return out


@functools.lru_cache(maxsize=16)
def _compile_serialized(blob: bytes) -> CompiledCrush:
    crush = CrushMap()
    crush.ParseFromString(blob)
    return CompiledCrush(crush)


def compile_crush(crush: CrushMap | CompiledCrush) -> CompiledCrush:
    """Return a CompiledCrush for ``crush``, reusing one built for identical content."""
    if isinstance(crush, CompiledCrush):
        return crush
    return _compile_serialized(crush.SerializeToString(deterministic=True))


def do_rule(
    crush: CrushMap | CompiledCrush,
    rule_id: int,
    x: int,
    result_max: int,
    reweights: Mapping[int, int] | None = None,
) -> list[int]:
    """Pure CRUSH mapping; see :meth:`CompiledCrush.do_rule`.

    Passing a ``CrushMap`` compiles it (cached by content); hot paths should
    hold a :class:`CompiledCrush` instead.
    """
    return compile_crush(crush).do_rule(rule_id, x, result_max, reweights)
