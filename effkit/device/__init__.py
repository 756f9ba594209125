"""What the hardware offers: measured ceilings, device facts, datasheet figures, roofs."""
from effkit.device.ceilings import Ceilings, device_ceilings, measure
from effkit.device.datasheet import DATASHEETS, lookup
from effkit.device.facts import device_facts
from effkit.device.roofs import Roof, roof_from_ceilings, roof_from_spec

__all__ = ["Ceilings", "DATASHEETS", "Roof", "device_ceilings", "device_facts", "lookup", "measure", "roof_from_ceilings", "roof_from_spec"]
