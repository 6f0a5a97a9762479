# One image for the four services and the operator (the chart picks the command).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml ./
COPY services ./services
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN groupadd --gid 10001 newbank && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin newbank
COPY --from=build /install /usr/local
USER 10001:10001
EXPOSE 8000
# The services: uvicorn newbank.<service>.main:app; the operator: python -m newbank_operator.
CMD ["uvicorn", "newbank.accounts.main:app", "--host", "0.0.0.0", "--port", "8000"]
