"""What the hardware offers: measured ceilings, device facts, datasheet figures."""
from effkit.device.ceilings import Ceilings, device_ceilings, measure
from effkit.device.datasheet import DATASHEETS, lookup
from effkit.device.facts import device_facts

__all__ = ["Ceilings", "DATASHEETS", "device_ceilings", "device_facts", "lookup", "measure"]
