"""
title: Unit converter
description: Converts lengths, weights and temperatures; each typed method becomes a tool
the model can call. Install it (as an admin) with
  POST /api/v1/tools/create
  {"id": "unit_converter", "name": "Unit converter", "content": <this file>}
and pass `"tool_ids": ["unit_converter"]` in a chat completion.
"""

from typing import Literal

LENGTH_IN_METRES = {
    "mm": 0.001,
    "cm": 0.01,
    "m": 1.0,
    "km": 1000.0,
    "in": 0.0254,
    "ft": 0.3048,
    "yd": 0.9144,
    "mi": 1609.344,
}
MASS_IN_GRAMS = {"g": 1.0, "kg": 1000.0, "oz": 28.349523125, "lb": 453.59237}

LengthUnit = Literal["mm", "cm", "m", "km", "in", "ft", "yd", "mi"]
MassUnit = Literal["g", "kg", "oz", "lb"]
TemperatureUnit = Literal["C", "F", "K"]


def _round(value: float) -> str:
    return f"{value:.6g}"


class Tools:
    def convert_length(self, value: float, from_unit: LengthUnit, to_unit: LengthUnit) -> str:
        """
        Convert a length between metric and imperial units.
        :param value: The length to convert.
        :param from_unit: The unit of `value`.
        :param to_unit: The unit wanted.
        """
        result = value * LENGTH_IN_METRES[from_unit] / LENGTH_IN_METRES[to_unit]
        return f"{_round(value)} {from_unit} = {_round(result)} {to_unit}"

    def convert_mass(self, value: float, from_unit: MassUnit, to_unit: MassUnit) -> str:
        """
        Convert a weight (mass) between grams, kilograms, ounces and pounds.
        :param value: The weight to convert.
        :param from_unit: The unit of `value`.
        :param to_unit: The unit wanted.
        """
        result = value * MASS_IN_GRAMS[from_unit] / MASS_IN_GRAMS[to_unit]
        return f"{_round(value)} {from_unit} = {_round(result)} {to_unit}"

    def convert_temperature(
        self, value: float, from_unit: TemperatureUnit, to_unit: TemperatureUnit
    ) -> str:
        """
        Convert a temperature between Celsius (C), Fahrenheit (F) and Kelvin (K).
        :param value: The temperature to convert.
        :param from_unit: The scale of `value`.
        :param to_unit: The scale wanted.
        """
        kelvin = {"C": value + 273.15, "F": (value - 32) * 5 / 9 + 273.15, "K": value}[from_unit]
        result = {"C": kelvin - 273.15, "F": (kelvin - 273.15) * 9 / 5 + 32, "K": kelvin}[to_unit]
        return f"{_round(value)} {from_unit} = {_round(result)} {to_unit}"
