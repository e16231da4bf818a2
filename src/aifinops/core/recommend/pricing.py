"""The price rules, registered on import: `spot-candidate` (pricing_spot), `cheaper-offer`
(pricing_offer), `commitments` (pricing_commitments), `off-hours` (pricing_offhours) and
`unattributed-spend` (pricing_unattributed). Each finds spend that the same work would not
need at another price, time or owner; their savings are a month of run-rate
(pricing_common), never the look-back's total."""

from aifinops.core.recommend.pricing_commitments import CommitmentsConfig, commitments
from aifinops.core.recommend.pricing_offer import CheaperOfferConfig, cheaper_offer
from aifinops.core.recommend.pricing_offhours import OffHoursConfig, off_hours
from aifinops.core.recommend.pricing_spot import SpotConfig, spot_candidate
from aifinops.core.recommend.pricing_unattributed import UnattributedConfig, unattributed_spend

__all__ = [
    "CheaperOfferConfig",
    "CommitmentsConfig",
    "OffHoursConfig",
    "SpotConfig",
    "UnattributedConfig",
    "cheaper_offer",
    "commitments",
    "off_hours",
    "spot_candidate",
    "unattributed_spend",
]
