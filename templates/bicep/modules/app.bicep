// App Service plan + Linux Web App running the EMRsim sim server, with a `staging` slot for
// blue-green deployment. Both slots run as one user-assigned managed identity: it resolves
// the Key Vault references, signs in to PostgreSQL with Entra ID tokens (db_auth=azure) and
// writes backups. Outbound traffic goes through the VNet (regional VNet integration), so the
// private endpoints of PostgreSQL, Storage and Key Vault are reachable. Nothing secret is
// stored in app settings; the sim API's bearer token is a Key Vault reference.

@description('Azure region.')
param location string

@description('Tags shared by every resource.')
param tags object

@description('App Service plan name.')
param planName string

@description('Web App name (globally unique).')
param siteName string

@description('App Service plan SKU (Standard or higher for slots, Premium v3 for zone redundancy).')
param skuName string

@description('Number of instances (the autoscale minimum when autoscale is on).')
param instanceCount int

@description('Spread the plan\'s instances over availability zones (Premium v3).')
param zoneRedundant bool

@description('Application Insights connection string.')
param appInsightsConnectionString string

@description('Key Vault holding the sim token.')
param keyVaultName string

@description('PostgreSQL host name.')
param databaseHost string

@description('Blob endpoint of the backup storage account.')
param storageBlobEndpoint string

@description('Subnet for regional VNet integration.')
param subnetId string

@description('Resource id of the app\'s user-assigned managed identity.')
param identityId string

@description('Client id of that identity (DefaultAzureCredential picks it with AZURE_CLIENT_ID).')
param identityClientId string

@description('Name of that identity: the PostgreSQL role it signs in as.')
param identityName string

@description('age recipient (public key) backups are encrypted to; empty: no encryption.')
param backupRecipient string

@description('Log Analytics workspace for the site and slot logs and metrics.')
param logAnalyticsWorkspaceId string

var readyPath = '/ready'
// EMROPS_DB_URL: an Entra ID token is the password (emrops db_auth=azure), TLS verified
// against the system CA bundle, which holds the Azure root CAs.
var appSettings = [
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    // Application Insights takes only Entra ID authenticated telemetry (DisableLocalAuth):
    // the app identity, which holds Monitoring Metrics Publisher on it
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD;ClientId=${identityClientId}'
  }
  {
    name: 'AZURE_CLIENT_ID'
    value: identityClientId
  }
  {
    name: 'EMROPS_DB_URL'
    value: 'postgresql+psycopg://${identityName}@${databaseHost}:5432/emrsim?auth=azure&sslmode=verify-full'
  }
  {
    name: 'EMROPS_SIM_TOKEN'
    value: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=sim-token)'
  }
  {
    name: 'EMROPS_BACKUP_STORE'
    value: 'azure://backups/backups'
  }
  {
    name: 'EMROPS_AZURE_STORAGE_ACCOUNT_URL'
    value: storageBlobEndpoint
  }
  {
    name: 'EMROPS_BACKUP_RECIPIENT'
    value: backupRecipient
  }
  {
    name: 'WEBSITE_SWAP_WARMUP_PING_PATH'
    value: readyPath
  }
  {
    name: 'WEBSITE_SWAP_WARMUP_PING_STATUSES'
    value: '200'
  }
  {
    name: 'SCM_DO_BUILD_DURING_DEPLOYMENT'
    value: 'true'
  }
]
// The site config and identity are written out in both the site and the slot, not shared
// through a variable: checkov resolves variable references in resource bodies only some of
// the time (a fresh CI run saw `siteConfig: siteConfig` as unresolved and failed six checks).

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  #checkov:skip=CKV_AZURE_225:Zone redundancy is the appZoneRedundant parameter: on in production (Premium v3), off in staging, whose Standard plan cannot have it; tests/provision/test_templates.py asserts both
  name: planName
  location: location
  tags: tags
  kind: 'linux'
  sku: {
    name: skuName
    capacity: instanceCount
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  #checkov:skip=CKV_AZURE_13:No App Service Authentication: the sim API requires its own bearer token (EMROPS_SIM_TOKEN, a Key Vault reference in the app settings) and `sim serve` refuses a non-loopback address without it
  #checkov:skip=CKV_AZURE_17:Client certificates are not used by the browser clients of EMRsim
  #checkov:skip=CKV_AZURE_88:The app keeps no content on Azure Files; state lives in PostgreSQL
  #checkov:skip=CKV_AZURE_222:Public access is required: students reach EMRsim over the internet (with the sim token); the app's own outbound traffic stays in the VNet
  name: siteName
  location: location
  tags: tags
  kind: 'app,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: subnetId
    // --host 0.0.0.0 is the container interface behind the App Service front end: `sim serve`
    // refuses it without EMROPS_SIM_TOKEN, which the Key Vault reference provides.
    siteConfig: {
      linuxFxVersion: 'PYTHON|3.12'
      appCommandLine: 'python -m emrops sim serve --host 0.0.0.0 --port 8000'
      healthCheckPath: readyPath
      alwaysOn: true
      numberOfWorkers: instanceCount
      http20Enabled: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      remoteDebuggingEnabled: false
      vnetRouteAllEnabled: true
      appSettings: appSettings
    }
  }
}

resource stagingSlot 'Microsoft.Web/sites/slots@2023-12-01' = {
  #checkov:skip=CKV_AZURE_13:No App Service Authentication: the sim API requires its own bearer token (EMROPS_SIM_TOKEN, a Key Vault reference in the app settings) and `sim serve` refuses a non-loopback address without it
  #checkov:skip=CKV_AZURE_17:Client certificates are not used by the browser clients of EMRsim
  #checkov:skip=CKV_AZURE_88:The app keeps no content on Azure Files; state lives in PostgreSQL
  #checkov:skip=CKV_AZURE_222:The staging slot is probed from CI runners over the internet before a swap (with the sim token)
  parent: site
  name: 'staging'
  location: location
  tags: tags
  kind: 'app,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientAffinityEnabled: false
    keyVaultReferenceIdentity: identityId
    virtualNetworkSubnetId: subnetId
    siteConfig: {
      linuxFxVersion: 'PYTHON|3.12'
      appCommandLine: 'python -m emrops sim serve --host 0.0.0.0 --port 8000'
      healthCheckPath: readyPath
      alwaysOn: true
      numberOfWorkers: instanceCount
      http20Enabled: true
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      remoteDebuggingEnabled: false
      vnetRouteAllEnabled: true
      appSettings: appSettings
    }
  }
}

// Basic publishing credentials off for FTP and Kudu (scm), on the site and on the slot (Azure
// security baseline for App Service, Azure Policy "App Service apps should have local
// authentication methods disabled for FTP/SCM site deployments"). `emrops deploy push`
// deploys with an Entra ID bearer token to Kudu, which these policies leave allowed; the
// deploying principal needs a role on the site (Website Contributor or Contributor).
resource siteFtpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource siteScmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource slotFtpBasicAuth 'Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: stagingSlot
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource slotScmBasicAuth 'Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: stagingSlot
  name: 'scm'
  properties: {
    allow: false
  }
}

// HTTP, console (the sim server's stdout/stderr), app and audit (publishing sign-ins) logs
// and metrics of the production slot to the workspace.
resource siteDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'site-to-workspace'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AppServiceHTTPLogs'
        enabled: true
      }
      {
        category: 'AppServiceConsoleLogs'
        enabled: true
      }
      {
        category: 'AppServiceAppLogs'
        enabled: true
      }
      {
        category: 'AppServiceAuditLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

// HTTP, console (the sim server's stdout/stderr), app and audit (publishing sign-ins) logs
// and metrics of the staging slot to the workspace.
resource slotDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'slot-to-workspace'
  scope: stagingSlot
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'AppServiceHTTPLogs'
        enabled: true
      }
      {
        category: 'AppServiceConsoleLogs'
        enabled: true
      }
      {
        category: 'AppServiceAppLogs'
        enabled: true
      }
      {
        category: 'AppServiceAuditLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

@description('Resource id of the Web App.')
output siteId string = site.id

@description('Resource id of the App Service plan (autoscale target).')
output planId string = plan.id

@description('Web App name.')
output siteName string = site.name

@description('Production host name.')
output defaultHostName string = site.properties.defaultHostName

@description('Staging slot host name.')
output stagingHostName string = stagingSlot.properties.defaultHostName
